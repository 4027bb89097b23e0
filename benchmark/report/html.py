"""The report's pages as HTML (Jinja2 template ``templates/page.html.j2``): every table sortable
by a few lines of plain JavaScript in the page (no network), figures embedded as images and
linked to their PNG / PDF files, links to other pages pointing at their ``.html``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from ..errors import PackagingError
from .format import NUMBER, NUMERIC_CELL
from .pages import Block, Page, list_items, relative

TEMPLATES = Path(__file__).resolve().parent / "templates"  # package data (pyproject.toml)
PAGE_TEMPLATE = "page.html.j2"


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                       keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def _target(path: str, stem: str) -> str:
    """A report-relative link target as seen from page ``stem``; a Markdown page becomes its HTML page."""
    if not re.match(r"^[a-z]+:", path):
        path = re.sub(r"(^|/)README\.html$", r"\1index.html", re.sub(r"\.md(#|$)", r".html\1", path))
    return relative(path, stem)


def inline(text: str, stem: str) -> Markup:
    """Inline Markdown (``**bold**``, ``*italic*``, ```code```, links, images) as safe HTML."""
    out, codes = str(escape(text)), []

    def keep(m: re.Match) -> str:
        codes.append(f"<code>{m.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    out = re.sub(r"`([^`]+)`", keep, out)
    out = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)",
                 lambda m: f'<img src="{_target(m.group(2), stem)}" alt="{m.group(1)}">', out)
    out = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", lambda m: f'<a href="{_target(m.group(2), stem)}">{m.group(1)}</a>', out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![*\w])\*([^*\s][^*]*)\*(?![*\w])", r"<em>\1</em>", out)
    out = re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], out)
    return Markup(out)


def _cell(text: str, bold: bool, align: str, markup: bool, stem: str) -> dict[str, Any]:
    """A table cell: a markup cell's links as links; a number with its ± spread (or an AU count k/d)
    kept on one line, what follows it (counts, "(at cap)", more per-seed values) free to wrap."""
    m = re.match(NUMBER, text.strip()) if align == "r" else None
    if markup:
        content = inline(text, stem)
    else:
        number = NUMERIC_CELL.fullmatch(text) if align == "r" else None
        content = (Markup('<span class="v">{}</span>{}').format(number.group("num"), number.group("rest"))
                   if number else escape(text))
    return {"html": content, "bold": bold, "num": align == "r", "sort": m.group(0) if m else ""}


def _block(block: Block, stem: str) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": block.kind, "level": block.level, "anchor": block.anchor,
                           "html": inline(block.text, stem), "folded": block.folded, "number": block.number,
                           "items_html": [(level, inline(text, stem)) for level, text in list_items(block)],
                           "quotes": block.items if block.kind == "quotes" else [],  # plain text, autoescaped
                           "links": [(label, relative(path, stem)) for label, path in block.links]}  # files as they are
    if block.kind == "figure":
        out["src"] = relative(block.path, stem)
    if block.table is not None:
        table = block.table
        out["header"] = [(h, a == "r") for h, a in zip(table.header, table.align)]
        out["rows"] = [[_cell(c, b, a, table.is_markup(i), stem)
                        for i, (c, b, a) in enumerate(zip(row, bold, table.align))]
                       for row, bold in zip(table.rows, table.bold)]
        out["notes"] = table.notes
    return out


def check_templates() -> None:
    """Raise a :class:`PackagingError` naming the page template when the package lacks it."""
    if not (TEMPLATES / PAGE_TEMPLATE).is_file():
        raise PackagingError(f"the report template {TEMPLATES / PAGE_TEMPLATE} is missing: the package is installed "
                             "incompletely; reinstall it (pip install --force-reinstall .) or run from a checkout")


def html(page: Page, stem: str) -> str:
    """The page as HTML at ``stem`` + ``.html``."""
    check_templates()
    template = _environment().get_template(PAGE_TEMPLATE)
    nav = [(label, _target(target + ".md", stem)) for label, target in page.nav]
    return template.render(page=page, nav=nav, blocks=[_block(b, stem) for b in page.blocks])
