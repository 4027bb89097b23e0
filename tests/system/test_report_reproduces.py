"""The committed ``reports/`` is what ``python -m benchmark report`` makes from the committed
``results/`` today (issue 24): the report is regenerated once, in process, into a temporary folder
laid out like the repository (``results/`` beside ``reports/``, the same relative paths, so every
link and the line naming ``results/`` match), and compared with ``reports/``:

- every text file (Markdown, HTML, CSV, LaTeX, JSON, MANIFEST) byte for byte;
- PNG figures by their decoded pixels: the same size, no channel of any pixel off by more than
  :data:`PNG_MAX_DIFF` / 255 and at most :data:`PNG_MAX_SHARE` of the pixels differing at all. Agg's
  anti-aliasing is not bit-identical across CPU models: the same report rendered on an Intel Xeon
  and on an AMD EPYC differs in a few hundred pixels of some curve figures by at most 4/255
  (measured: 409 of 3.4 million pixels, 0.012%, of ``quick/figures/curves.fashion-mnist.png``;
  every other figure identical), while any real change (a moved point, a new seed, a changed label)
  changes pixels by far more than 8/255 (measured on the four ``ptb-quick`` figures three new
  records change: 863 to 64,964 pixels off by more than 8/255, each up to 217/255 or 255/255);
- PDF figures by their structure: the same objects (page count and page sizes included), fonts and
  embedded images (decompressed) byte for byte, and the decompressed content streams token for
  token with numbers within :data:`PDF_NUMBER_TOL` points (across CPU models a coordinate may differ
  in its last printed digit: measured 1e-6 pt, in the legend frame of that curve figure; every
  other PDF identical).

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
PNG_MAX_DIFF = 8  # of 255, in any channel of any pixel: twice the most measured across CPU models
PNG_MAX_SHARE = 0.005  # of a figure's pixels that may differ at all (measured: 0.012% at most)
PDF_NUMBER_TOL = 0.01  # points (1/72 in; a 300 dpi pixel is 0.24 pt)
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
    """How two images (uint8 arrays) differ beyond the tolerance; None within it."""
    import numpy as np

    if a.shape != b.shape:
        return f"{what} size differs: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]} px"
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    per_pixel = diff.reshape(diff.shape[0], diff.shape[1], -1).max(axis=2)
    differing, worst = int((per_pixel > 0).sum()), int(per_pixel.max())
    share = differing / per_pixel.size
    if worst <= PNG_MAX_DIFF and share <= PNG_MAX_SHARE:
        return None
    return (f"{what} differs beyond the tolerance: {differing} of {per_pixel.size} pixels ({100 * share:.3f}%) "
            f"differ, {int((per_pixel > PNG_MAX_DIFF).sum())} by more than {PNG_MAX_DIFF}/255, at most by "
            f"{worst}/255 (tolerance: none by more than {PNG_MAX_DIFF}/255, at most {100 * PNG_MAX_SHARE:g}% "
            "differing)")


def png_difference(committed: bytes, made: bytes) -> str | None:
    if committed == made:
        return None
    import io

    import numpy as np
    from PIL import Image

    def decode(data: bytes):
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))

    return pixel_difference(decode(committed), decode(made), "PNG")


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
    """Where two PDF object texts differ beyond :data:`PDF_NUMBER_TOL` (numbers with a decimal point
    within it, everything else exactly); None when they agree."""
    if a == b:
        return None
    pa, pb = NUMBER.split(a), NUMBER.split(b)
    if len(pa) != len(pb):
        return f"{len(pa) // 2} vs {len(pb) // 2} numbers"
    for i, (x, y) in enumerate(zip(pa, pb)):
        if x == y or (i % 2 == 1 and float(x) == float(y)):  # a coordinate written "-0" or "0"
            continue
        if i % 2 == 0 or b"." not in x + y or abs(float(x) - float(y)) > PDF_NUMBER_TOL:
            context = a[max(0, sum(map(len, pa[:i])) - 40):sum(map(len, pa[:i])) + 40]
            return f"{x[:40]!r} vs {y[:40]!r} near {context!r}"
    return None


def pdf_difference(committed: bytes, made: bytes) -> str | None:
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
        return None
    size = re.search(rb"/MediaBox \[([^\]]*)\]", committed)
    return (f"PDF ({pages[0]} page{'s' if pages[0] != 1 else ''}"
            + (f", MediaBox [{size.group(1).decode().strip()}]" if size else "") + f"): {problems[0]}"
            + (f" (and {len(problems) - 1} more objects)" if len(problems) > 1 else ""))


def difference(path: str, committed: bytes, made: bytes) -> str | None:
    """How a committed file differs from its regenerated self beyond what the comparison allows."""
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


def test_png_comparison_allows_anti_aliasing_and_catches_real_changes():
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (200, 300, 4), dtype=np.uint8)
    assert png_difference(_png(base), _png(base)) is None
    aliased = base.copy()  # 0.1% of the pixels off by at most 4/255: across CPU models
    rows, cols = rng.integers(0, 200, 60), rng.integers(0, 300, 60)
    aliased[rows, cols, :3] = np.clip(base[rows, cols, :3].astype(int) + 4, 0, 255).astype(np.uint8)
    assert png_difference(_png(base), _png(aliased)) is None
    moved = base.copy()  # one pixel changed by a real difference
    moved[10, 10, 0] = base[10, 10, 0] ^ 0x80
    assert "more than 8/255" in png_difference(_png(base), _png(moved))
    faint = base.copy()  # a faint change over 1% of the figure
    faint[:2, :, 1] = np.clip(base[:2, :, 1].astype(int) + 2, 0, 255).astype(np.uint8)
    faint[2:4, :, 1] = np.clip(base[2:4, :, 1].astype(int) - 2, 0, 255).astype(np.uint8)
    assert "differ" in png_difference(_png(base), _png(faint))
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


def test_pdf_comparison_allows_last_digits_and_catches_real_changes():
    line = _pdf(lambda ax: ax.plot([0, 1, 2], [0, 1, 0.5]))
    assert pdf_difference(line, line) is None
    nudged = _pdf(lambda ax: ax.plot([0, 1, 2], [0, 1, 0.5 + 1e-5]))
    assert nudged != line and pdf_difference(line, nudged) is None  # a coordinate's last digit
    moved = _pdf(lambda ax: ax.plot([0, 1, 2], [0, 1, 0.6]))
    assert "object" in pdf_difference(line, moved)
    labelled = _pdf(lambda ax: (ax.plot([0, 1, 2], [0, 1, 0.5]), ax.set_xlabel("epoch")))
    assert pdf_difference(line, labelled) is not None


def test_text_comparison_is_exact_and_names_the_line():
    assert text_difference(b"a\nb\n", b"a\nb\n") is None
    found = text_difference(b"a\n| vae | 0.53 |\n", b"a\n| vae | 0.54 |\n")
    assert "line 2" in found and "0.53" in found and "0.54" in found
