"""The report's pages as plain blocks (headings, text, tables, figures, lists), rendered to
Markdown here (for the code host) and to HTML by :mod:`benchmark.report.html`. Paths in blocks
are relative to the report folder; each renderer makes them relative to its page."""

from __future__ import annotations

import html
import posixpath
import re
from dataclasses import dataclass, field

from .format import Table, md_plain


@dataclass
class Block:
    """One piece of a page. ``kind``: heading | text | list | quotes (``items`` as plain text, never
    markup: e.g. decoded sentences with ``<unk>``) | table | figure."""

    kind: str
    text: str = ""  # heading / text (inline Markdown) / caption
    level: int = 2  # heading level
    items: list[str] = field(default_factory=list)  # list items (inline Markdown)
    table: Table | None = None
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, path) under a table or figure
    folded: bool = False  # a table shown folded (details) in Markdown
    path: str = ""  # figure PNG
    number: int = 0  # figure number
    anchor: str = ""


@dataclass
class Page:
    """A page at ``stem`` (relative, without extension: ``README`` / ``index``, ``<grid>/<dataset>``)."""

    stem: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    nav: list[tuple[str, str]] = field(default_factory=list)  # (label, page stem) links at the top

    def add(self, kind: str, **kwargs) -> Block:
        block = Block(kind, **kwargs)
        self.blocks.append(block)
        return block

    def heading(self, text: str, level: int = 2) -> None:
        self.add("heading", text=text, level=level, anchor=re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-"))

    def text(self, *paragraphs: str) -> None:
        for paragraph in paragraphs:
            if paragraph:
                self.add("text", text=paragraph)


def list_items(block: Block) -> list[tuple[int, str]]:
    """(nesting level, text) of a list block's items: an item may start with ``- `` (level 0) or
    ``  - `` (level 1), as :func:`benchmark.report.missing.missing_section` writes them."""
    out = []
    for item in block.items:
        m = re.match(r"^( *)- (.*)$", item, re.S)
        out.append((len(m.group(1)) // 2, m.group(2)) if m else (0, item))
    return out


def plain_text(text: str) -> str:
    """``text`` shown as it is in Markdown: HTML-escaped, Markdown's inline marks backslash-escaped."""
    return re.sub(r"([\\`*_\[\]~])", r"\\\1", html.escape(text, quote=False))


def code_tags(text: str) -> str:
    """Inline Markdown ``text`` with its tag-like tokens (``</s>``, ``<unk>``) as code, shown as they are."""
    return re.sub(r"(?<!`)(</?[A-Za-z]+>)(?!`)", r"`\1`", text)


def relative(path: str, page_stem: str) -> str:
    """``path`` (relative to the report folder) as seen from the page ``page_stem``."""
    if re.match(r"^[a-z]+:", path) or path.startswith("#"):
        return path
    return posixpath.relpath(path, posixpath.dirname(page_stem) or ".")


def _md_links(text: str, stem: str) -> str:
    """Inline Markdown links and images with report-relative targets, made page-relative."""
    return re.sub(r"(!?\[[^\]]*\])\(([^)\s]+)\)", lambda m: f"{m.group(1)}({relative(m.group(2), stem)})", text)


def markdown(page: Page, md_stem: str) -> str:
    """The page as Markdown at ``md_stem`` (links to other pages point at their ``.md``)."""
    lines = [f"# {page.title}", ""]
    if page.nav:
        lines += [" · ".join(f"[{label}]({relative(target + '.md', md_stem)})" for label, target in page.nav), ""]
    for block in page.blocks:
        if block.kind == "heading":
            lines += ["#" * block.level + " " + block.text, ""]
        elif block.kind == "text":
            lines += [_md_links(block.text, md_stem), ""]
        elif block.kind == "list":
            lines += [f"{'  ' * level}- {_md_links(item, md_stem)}" for level, item in list_items(block)] + [""]
        elif block.kind == "quotes":
            lines += [f"- {plain_text(item)}" for item in block.items] + [""]
        elif block.kind == "table" and block.table is not None:
            body = [block.table.markdown(link=lambda text: _md_links(text, md_stem)),
                    *(f"{md_plain(n)}." for n in block.table.notes)]
            links = " · ".join(f"[{label}]({relative(path, md_stem)})" for label, path in block.links)
            if block.folded:
                lines += [f"<details><summary>{block.text}</summary>", "", *body, "", "</details>", ""]
            else:
                lines += ([_md_links(block.text, md_stem), ""] if block.text else []) + body + [""]
            if links:
                lines += [f"Files: {links}", ""]
        elif block.kind == "figure":
            links = " · ".join(f"[{label}]({relative(path, md_stem)})" for label, path in block.links)
            caption = f"*Figure {block.number}. {_md_links(block.text, md_stem)}*" + (f" ({links})" if links else "")
            lines += [f"![{block.anchor}]({relative(block.path, md_stem)})", "", caption, ""]
    return "\n".join(lines).rstrip("\n") + "\n"
