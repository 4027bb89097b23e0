"""The committed ``reports/`` is byte for byte what ``python -m benchmark report`` makes from the
committed ``results/`` today (issue 24): the report is regenerated once, in process, into a temporary
folder laid out like the repository (``results/`` beside ``reports/``, the same relative paths, so
every link and the line naming ``results/`` match), and every file -- Markdown, HTML, CSV, LaTeX,
JSON, MANIFEST, PNG and PDF -- is compared with its committed self byte for byte.

Figures are byte-identical because every dependency that draws them is pinned
(``requirements-lock.txt``), they carry no dates or version strings, and their layout is rounded
before drawing (:func:`benchmark.report.layout.snap`): without that, the constrained-layout solver's
last digits vary from process to process (measured: two full reports on one machine differed in
``ptb-quick/figures/curves.ptb.png``, 4/255 in 0.007% of its pixels, and in PDF coordinates' tenth
decimal). A file that differs is described -- a text file by its first differing line, a PNG by how
many pixels differ and by how much, a PDF by its first differing object -- so a failure says whether
it is a real change (a moved point: hundreds of pixels off by 100/255 or more) or drawing noise.

The report takes about 2.5 minutes of one core; it is made once for the module.
"""

from __future__ import annotations

import difflib
import os
import re
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIX = ("Fix: regenerate the report from the committed results and commit it:\n"
       "    .venv/bin/python -m benchmark report\n"
       "    git add reports && git commit")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    """``python -m benchmark report --results results --out reports`` run in a temporary folder whose
    ``results/`` links to each entry of the repository's ``results/``: its ``reports/``."""
    from benchmark.cli import main

    if not (ROOT / "reports").is_dir() or not (ROOT / "results").is_dir():
        pytest.skip("no committed reports/ or results/ (not a checkout of the repository)")
    work = tmp_path_factory.mktemp("reproduce")
    (work / "results").mkdir()
    for entry in sorted((ROOT / "results").iterdir()):
        (work / "results" / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    before = Path.cwd()
    os.chdir(work)  # relative paths as in the repository (reports/README.md names `results/`)
    try:
        code = main(["report", "--results", "results", "--out", "reports"])
    finally:
        os.chdir(before)
    assert code == 0
    return work / "reports"


def files(root: Path) -> set[str]:
    """Paths of the files under ``root`` (relative, POSIX), hidden ones (``.gitkeep``) left out."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def text_difference(committed: bytes, made: bytes) -> str | None:
    """How two text files differ (the first differing line of each, and how many lines differ)."""
    if committed == made:
        return None
    a = committed.decode("utf-8", "replace").splitlines()
    b = made.decode("utf-8", "replace").splitlines()
    changed = [line for line in difflib.unified_diff(a, b, lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    x, y = (lines[first] if first < len(lines) else "" for lines in (a, b))
    column = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    start = max(0, column - 40)
    shown = lambda lines: (repr(("…" if start else "") + lines[first][start:start + 100])  # noqa: E731
                           if first < len(lines) else "(no line)")
    return (f"text differs ({len(changed)} lines changed; {len(a)} vs {len(b)} lines); first at line {first + 1}: "
            f"committed {shown(a)}, regenerated {shown(b)}")


def pixel_difference(a, b, what: str) -> str | None:
    """How two images (uint8 arrays) differ; None when they are the same."""
    import numpy as np

    if a.shape != b.shape:
        return f"{what} size differs: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]} px"
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    per_pixel = diff.reshape(diff.shape[0], diff.shape[1], -1).max(axis=2)
    differing, worst = int((per_pixel > 0).sum()), int(per_pixel.max())
    if not differing:
        return None
    return (f"{what} differs: {differing} of {per_pixel.size} pixels ({100 * differing / per_pixel.size:.3f}%), "
            f"{int((per_pixel > 8).sum())} of them by more than 8/255, at most by {worst}/255")


def png_difference(committed: bytes, made: bytes) -> str | None:
    """How two PNG files differ (their pixels; the same pixels in other bytes say so)."""
    if committed == made:
        return None
    import io

    import numpy as np
    from PIL import Image

    def decode(data: bytes):
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))

    return pixel_difference(decode(committed), decode(made), "PNG") or "PNG: the same pixels in other bytes"


NUMBER = re.compile(rb"([-+]?(?:\d+\.\d*|\.\d+|\d+))")


def pdf_objects(data: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    """A PDF's objects (matplotlib's: one cross-reference table, uncompressed object syntax, Flate
    streams): number -> (dictionary or body, decompressed stream or None). Each object is cut at
    the offsets the table gives, so binary stream data never ends one early."""
    xref = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data).group(1))
    head = re.match(rb"xref\s+(\d+) (\d+)\s+", data[xref:])
    first, count = int(head.group(1)), int(head.group(2))
    table = data[xref + head.end():xref + head.end() + 20 * count]
    offsets = sorted((int(table[20 * i:20 * i + 10]), first + i) for i in range(count)
                     if table[20 * i + 17:20 * i + 18] == b"n")
    objects = {}
    for (start, number), end in zip(offsets, [o for o, _ in offsets[1:]] + [xref]):
        text = data[start:end]
        text = text[re.match(rb"\d+ \d+ obj\s*", text).end():text.rfind(b"endobj")]
        opening = re.search(rb">>\s*stream\r?\n", text)
        if opening is None:
            objects[number] = (text.strip(), None)
            continue
        dictionary, stream = text[:opening.start() + 2], text[opening.end():text.rfind(b"endstream")]
        stream = stream[:-1] if stream.endswith(b"\n") else stream
        if b"/FlateDecode" in dictionary:
            stream = zlib.decompressobj().decompress(stream)
        objects[number] = (re.sub(rb"/Length \d+( 0 R)?", b"/Length", dictionary), stream)
    return objects


def tokens_difference(a: bytes, b: bytes) -> str | None:
    """Where two PDF object texts first differ (a number, or other text); None when they agree."""
    if a == b:
        return None
    pa, pb = NUMBER.split(a), NUMBER.split(b)
    if len(pa) != len(pb):
        return f"{len(pa) // 2} vs {len(pb) // 2} numbers"
    i = next(i for i, (x, y) in enumerate(zip(pa, pb)) if x != y)
    context = a[max(0, sum(map(len, pa[:i])) - 40):sum(map(len, pa[:i])) + 40]
    return f"{pa[i][:40]!r} vs {pb[i][:40]!r} near {context!r}"


def pdf_difference(committed: bytes, made: bytes) -> str | None:
    """How two PDF files differ: pages, objects, and the first differing object's text or stream."""
    if committed == made:
        return None
    a, b = pdf_objects(committed), pdf_objects(made)
    pages = [sum(1 for head, _ in objects.values() if re.search(rb"/Type /Page\b", head)) for objects in (a, b)]
    if pages[0] != pages[1]:
        return f"PDF: {pages[0]} vs {pages[1]} pages"
    if sorted(a) != sorted(b):
        return f"PDF: {len(a)} vs {len(b)} objects"
    problems = []
    for number in sorted(a):
        (head_a, stream_a), (head_b, stream_b) = a[number], b[number]
        if stream_a is None and stream_b is None and head_a.isdigit() and head_b.isdigit():
            continue  # a stream's length, written as an object of its own
        if (stream_a is None) != (stream_b is None):
            problems.append(f"object {number}: a stream in one file only")
            continue
        found = tokens_difference(head_a, head_b)
        if found is None and stream_a is not None and stream_a != stream_b:
            if b"/Subtype /Image" in head_a:
                found = "embedded image differs"
            elif b"/Length1" in head_a or b"/Subtype" in head_a:
                found = "binary stream (a font) differs"
            else:
                found = tokens_difference(stream_a, stream_b)
        if found:
            problems.append(f"object {number}: {found}")
    if not problems:
        return "PDF: the same objects in other bytes"
    size = re.search(rb"/MediaBox \[([^\]]*)\]", committed)
    return (f"PDF ({pages[0]} page{'s' if pages[0] != 1 else ''}"
            + (f", MediaBox [{size.group(1).decode().strip()}]" if size else "") + f"): {problems[0]}"
            + (f" (and {len(problems) - 1} more objects)" if len(problems) > 1 else ""))


def difference(path: str, committed: bytes, made: bytes) -> str | None:
    """How a committed file differs from its regenerated self; None when they are the same bytes."""
    if path.endswith(".png"):
        return png_difference(committed, made)
    if path.endswith(".pdf"):
        return pdf_difference(committed, made)
    return text_difference(committed, made)


def test_committed_reports_are_what_the_committed_results_make(regenerated):
    committed_root = ROOT / "reports"
    committed, made = files(committed_root), files(regenerated)
    problems = [f"reports/{p}: committed, but the report no longer writes it" for p in sorted(committed - made)]
    problems += [f"reports/{p}: the report writes it, not committed" for p in sorted(made - committed)]
    for path in sorted(committed & made):
        found = difference(path, (committed_root / path).read_bytes(), (regenerated / path).read_bytes())
        if found:
            problems.append(f"reports/{path}: {found}")
    assert not problems, (f"reports/ is not what `python -m benchmark report` makes from results/ "
                          f"({len(problems)} files differ):\n" + "\n".join(problems) + "\n" + FIX)


# --- the comparison itself -------------------------------------------------------------------

def _png(pixels) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_png_comparison_describes_any_difference():
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (200, 300, 4), dtype=np.uint8)
    assert png_difference(_png(base), _png(base)) is None
    aliased = base.copy()  # one pixel off by 4/255: drawing noise, still a difference
    aliased[10, 10, 0] = min(255, int(base[10, 10, 0]) + 4) if base[10, 10, 0] < 252 else base[10, 10, 0] - 4
    found = png_difference(_png(base), _png(aliased))
    assert "1 of 60000 pixels" in found and "at most by 4/255" in found and "0 of them by more than 8/255" in found
    moved = base.copy()  # a real difference
    moved[10, 10, 0] = base[10, 10, 0] ^ 0x80
    assert "1 of them by more than 8/255" in png_difference(_png(base), _png(moved))
    assert "size differs" in png_difference(_png(base), _png(base[:199]))


def _pdf(drawing) -> bytes:
    import io

    from benchmark.report.figures import PDF_METADATA, figure_style, new_figure

    with figure_style():
        fig, (ax,) = new_figure(3.0, 2.0)
        drawing(ax)
        out = io.BytesIO()
        fig.savefig(out, format="pdf", metadata=PDF_METADATA)
    return out.getvalue()


def test_pdf_comparison_describes_any_difference():
    line = _pdf(lambda ax: ax.plot([0, 1, 2], [0, 1, 0.5]))
    assert pdf_difference(line, line) is None
    nudged = _pdf(lambda ax: ax.plot([0, 1, 2], [0, 1, 0.5 + 1e-5]))  # a coordinate's last digit
    assert nudged != line and "object" in pdf_difference(line, nudged)
    moved = _pdf(lambda ax: ax.plot([0, 1, 2], [0, 1, 0.6]))
    assert "object" in pdf_difference(line, moved)
    labelled = _pdf(lambda ax: (ax.plot([0, 1, 2], [0, 1, 0.5]), ax.set_xlabel("epoch")))
    assert pdf_difference(line, labelled) is not None


def test_text_comparison_is_exact_and_names_the_line():
    assert text_difference(b"a\nb\n", b"a\nb\n") is None
    found = text_difference(b"a\n| vae | 0.53 |\n", b"a\n| vae | 0.54 |\n")
    assert "line 2" in found and "0.53" in found and "0.54" in found
