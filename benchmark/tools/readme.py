"""Copy the report's README tables into the generated blocks of the README and of docs/.

    python -m benchmark.tools.readme [--readme FILE ...] [--reports reports] [--check]

A generated block is every line between a line ``<!-- generated from reports/<grid>/readme.md -->``
(or ``readme.all.md``: every setting of the grid, not only its headline) and the next line
``<!-- end generated -->`` (markers inside a ``` code fence are text, not a block). Each is
replaced by the current content of the file it names, which ``python -m benchmark report`` writes
from the records; the rest of each file is left as it is.
The files are ``README.md`` and every ``docs/*.md`` of the current folder (the result prose moved
there keeps its blocks), or those given with ``--readme`` (repeatable); a file without blocks is
not written. ``--check`` writes nothing and exits 1 when a block differs from its file. Exit 2 (one
line on stderr, nothing written to any file) when a file a block names is missing, or a block is
not closed.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

START = re.compile(r"<!-- generated from reports/([^/\s]+)/(readme(?:\.all)?\.md) -->")
END = "<!-- end generated -->"


@dataclass(frozen=True)
class Block:
    """A generated block: the grid and file it is generated from, its marker lines' indices, its content."""

    grid: str
    file: str  # readme.md or readme.all.md
    start: int  # index of the start marker's line
    end: int  # index of the end marker's line
    content: str  # the lines between the markers, each ending in a newline


def blocks(text: str) -> list[Block]:
    """The generated blocks of ``text``, in order; ValueError for a block that is not closed."""
    lines = text.splitlines(keepends=True)
    found, open_at, fenced = [], None, False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        start = START.fullmatch(line.strip())
        if start and open_at is None:
            open_at, grid, name = i, start.group(1), start.group(2)
        elif (start or line.strip() == END) and open_at is not None:
            if start:
                raise ValueError(f"line {open_at + 1}: generated block from reports/{grid}/{name} is not "
                                 f"closed before line {i + 1} (`{END}`)")
            found.append(Block(grid, name, open_at, i, "".join(lines[open_at + 1:i])))
            open_at = None
    if open_at is not None:
        raise ValueError(f"line {open_at + 1}: generated block from reports/{grid}/{name} has no `{END}`")
    return found


def generated(reports: Path, grid: str, name: str = "readme.md") -> str:
    """The current content of ``<reports>/<grid>/<name>`` (ending in a newline); FileNotFoundError
    when there is none."""
    path = reports / grid / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `python -m benchmark report` first")
    content = path.read_text()
    return content if content.endswith("\n") else content + "\n"


def refresh(text: str, reports: Path) -> tuple[str, list[str]]:
    """``text`` with every generated block replaced by its file's content, and the grids whose block
    differed, as ``<grid>/<file>`` (ValueError, FileNotFoundError: see :func:`blocks`, :func:`generated`)."""
    lines = text.splitlines(keepends=True)
    out, changed, done = [], [], 0
    for block in blocks(text):
        content = generated(reports, block.grid, block.file)
        if content != block.content:
            changed.append(f"{block.grid}/{block.file}")
        out += lines[done:block.start + 1] + [content]
        done = block.end
    return "".join(out + lines[done:]), changed


def default_files(root: Path = Path(".")) -> list[Path]:
    """``README.md`` and every ``docs/*.md`` under ``root``, in that order (docs/ sorted by name)."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.tools.readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", action="append", metavar="FILE",
                        help="a file to update (repeatable; default: README.md and every docs/*.md)")
    parser.add_argument("--reports", default="reports", help="the report folder (default: reports)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a block differs")
    args = parser.parse_args(argv)
    files = [Path(f) for f in args.readme] if args.readme else default_files()
    updates = []  # (file, old text, new text, grids whose block differed, blocks)
    for readme in files:
        try:
            text = readme.read_text()
            new, changed = refresh(text, Path(args.reports))
        except (OSError, ValueError) as exc:
            print(f"error: {readme}: {exc}", file=sys.stderr)
            return 2
        updates.append((readme, text, new, changed, len(blocks(text))))
    if args.check:
        for readme, _, _, changed, _ in updates:
            for source in changed:
                print(f"{readme}: the block generated from reports/{source} differs from {args.reports}/"
                      f"{source} (run python -m benchmark.tools.readme)", file=sys.stderr)
        return 1 if any(changed for *_, changed, _ in updates) else 0
    for readme, text, new, changed, count in updates:
        if new != text:
            readme.write_text(new)
        if count:
            print(f"{readme}: {count} generated blocks, {len(changed)} updated", file=sys.stderr)
    if not any(count for *_, count in updates):
        print(f"{', '.join(map(str, files))}: no generated blocks", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
