"""Text formats of the report: fixed decimals, Markdown and LaTeX escapes, display names, tables
(Markdown, LaTeX sized to the page), CSV, file names."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd


def fixed(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text[1:] if re.fullmatch(r"-0\.?0*", text) else text


def md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def md_plain(text: str) -> str:
    """Plain text for a Markdown table cell or note (never inline HTML): ``|`` escaped, HTML's
    special characters as entities (``</s>`` shows as it is)."""
    return md_escape(html.escape(str(text), quote=False))


TEX_CHARS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
             "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "---", "–": "--",
             "±": r"$\pm$", "≥": r"$\geq$", "≤": r"$\leq$", "Δ": r"$\Delta$", "δ": r"$\delta$", "β": r"$\beta$",
             "α": r"$\alpha$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "×": r"$\times$", "†": r"$^\dagger$",
             "·": r"$\cdot$", "…": r"\ldots{}", "−": r"$-$", "²": r"$^2$", "*": r"$^*$", "<": r"\textless{}",
             ">": r"\textgreater{}", "γ": r"$\gamma$", "λ": r"$\lambda$", "‡": r"$^\ddagger$"}
# every hyperparameter shown by a symbol in setting labels (β=0.2, λ=0.25, δ=0.1; LaTeX: \beta, ...)
HP_SYMBOLS = {"beta": "β", "alpha_T": "α_T", "alpha": "α", "lam": "λ", "delta": "δ", "gamma": "γ",
              "alpha_schedule": "α schedule"}
_SYMBOL_NAME = re.compile(r"(?<![A-Za-z_])(" + "|".join(sorted(map(re.escape, HP_SYMBOLS), key=len, reverse=True))
                          + r")(?==)")
# how the report's tables name the methods (their code names elsewhere, e.g. in grid files)
DISPLAY_NAMES = {"vae": "VAE", "beta-vae": "β-VAE", "lr-vae": "LR-VAE", "lid-vae": "LID-VAE",
                 "il-lid-vae": "IL-LID-VAE", "kl-annealing": "KL annealing", "cyclical": "cyclical",
                 "free-bits": "free bits", "delta-vae": "δ-VAE", "bn-vae": "BN-VAE", "aggressive": "aggressive",
                 "info-vae": "InfoVAE", "skip-vae": "skip-VAE", "lstm-lm": "LSTM LM"}
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
# a number (an AU count as k/d), maybe with ± and a [low, high] interval, then anything after a space
NUMERIC_CELL = re.compile(rf"(?P<num>{NUMBER}(?:/\d+)?(?: ± {NUMBER})?(?: \[{NUMBER}, {NUMBER}\])?)"
                          r"(?P<rest>(?: .*)?)")
SEED_VALUE = rf"(?:{NUMBER}|invalid)"  # a per-seed value, or the word for one its estimator's check rejects
SEED_LIST = re.compile(rf"{SEED_VALUE}(?: {SEED_VALUE})+")


def symbol_text(text: str) -> str:
    """``name=value`` parts of a setting label with the symbols of :data:`HP_SYMBOLS` (β=0.2,
    α_T=1, γ=0.5, λ=0.25)."""
    return _SYMBOL_NAME.sub(lambda m: HP_SYMBOLS[m.group(1)], str(text))


def display_name(method: str) -> str:
    """The method's name in tables (:data:`DISPLAY_NAMES`: β-VAE, LR-VAE, free bits, ...); a method
    without one as it is named."""
    return DISPLAY_NAMES.get(method, method)


def hp_symbol(part: str) -> str:
    """One ``name=value`` part with the name as its symbol (:data:`HP_SYMBOLS`: λ=0.25)."""
    name, sep, value = str(part).partition("=")
    return f"{HP_SYMBOLS.get(name, name)}={value}" if sep else str(part)


def _tex_escape(text: str) -> str:
    text = str(text).replace("α_T", "\x00")  # the symbol α_T as one piece
    return "".join(TEX_CHARS.get(ch, ch) for ch in text).replace("\x00", r"$\alpha_T$")


def _tex_number(text: str) -> str:
    """A number (maybe an AU count k/d, with ± and a [low, high] interval) in math mode notation,
    e-notation as 10^k, the ± spread in script size."""
    def one(m: re.Match) -> str:
        mantissa, _, exponent = m.group(0).partition("e")
        return mantissa if not exponent else rf"{mantissa} \times 10^{{{int(exponent)}}}"
    mean, sep, spread = text.partition(" ± ")
    body = re.sub(NUMBER, one, mean)
    if sep:
        spread, bracket, interval = spread.partition(" [")
        body += r"{\scriptstyle\,\pm" + re.sub(NUMBER, one, spread) + "}" + (
            r"\;[" + re.sub(NUMBER, one, interval).replace(", ", ",\\,") if bracket else "")
    return body.replace(" [", r"\;[").replace(", ", ",\\,")


def _tex_cell(text: str, bold: bool) -> str:
    """A cell: numbers in math mode (bold as ``\\mathbf``), anything else escaped text."""
    if SEED_LIST.fullmatch(text):
        body = r"\;".join(r"\mathrm{invalid}" if value == "invalid" else value for value in text.split())
        return "$" + (rf"\mathbf{{{body}}}" if bold else body) + "$"
    m = NUMERIC_CELL.fullmatch(text)
    if not m:
        return _tex_escape(text)
    body = _tex_number(m.group("num"))
    body = rf"\mathbf{{{body}}}" if bold else body
    rest = m.group("rest")
    if rest.endswith(AT_CAP_MARK):  # "(at cap)" as a superscript: narrow columns
        return f"${body}$" + _tex_escape(rest[:-len(AT_CAP_MARK)]) + r"\textsuperscript{cap}"
    return f"${body}$" + _tex_escape(rest)


AT_CAP_MARK = " (at cap)"
# LaTeX tables are sized for the smallest page they serve: A4 or letter with 1 in margins, one column
# or a two-column layout's `table*` (both columns); the estimates below are for \small (9 pt) type
TEXT_WIDTH_PT = 452.0  # A4 with 1 in margins (6.27 in); letter's is 469 pt
TEXT_HEIGHT_PT = 650.0  # letter with 1 in margins (9 in); A4's is 698 pt
FLOAT_SHARE = 0.8  # a float estimated taller than this share of the text height becomes a longtable
LANDSCAPE = 1.35  # wider than this x the text width: sideways (pdflscape), else scaled to the width if needed
WRAP_PT = 80.0  # width of a wrapped ("p") column, e.g. long setting labels
CHAR_PT = 4.7  # one character of \small text, on average
SCRIPT_PT = 3.6  # one digit in script style (the ± spread)
ROW_PT = 11.0  # one line of \small text
CAPTION_CHARS = 95  # characters of one caption line (10 pt) across the text width
COLSEP_PT = 8.0  # 2 x \tabcolsep (4 pt)
FOOTNOTE_SCALE = 8 / 9  # \footnotesize (8 pt) against \small (9 pt)
TIGHT_COLSEP_PT = 6.0  # 2 x \tabcolsep (3 pt) with \footnotesize


def _tex_width(text: str) -> float:
    """A rough width of a cell as :func:`_tex_cell` writes it, in points."""
    m = NUMERIC_CELL.fullmatch(text)
    if m is None or SEED_LIST.fullmatch(text):
        return len(text) * CHAR_PT
    mean, _, spread = m.group("num").partition(" ± ")
    spread, _, interval = spread.partition(" [")
    rest = m.group("rest")
    rest_pt = (len(rest) - len(AT_CAP_MARK) + 3) * CHAR_PT * 0.75 if rest.endswith(AT_CAP_MARK) else len(rest) * CHAR_PT
    return (len(mean) + len(interval)) * CHAR_PT + (6.0 + len(spread) * SCRIPT_PT if spread else 0.0) + rest_pt


# HTML: sizes of the page's type (0.85 rem of 16 px) to check that a table fits the page's width
HTML_CHAR_PX = 8.0  # one character of a table cell (digits are tabular: about 0.55 em, with room)
HTML_HEADER_PX = 8.2  # one character of a (bold) header
HTML_CELL_PX = 17.0  # padding (2 x 0.5 rem) and border of a cell
MARKDOWN_LINK = re.compile(r"!?\[([^\]]*)\]\([^)\s]*\)")
GROUP_NOTE = "groups of comparable rows: "  # the note naming the group keys (LaTeX shows group rows instead)


@dataclass
class Table:
    """A table as header + rows of cell texts, with bold flags; rendered as Markdown / LaTeX.

    ``markup``: per column, cells that are inline Markdown (links), rendered as such in Markdown and
    HTML; ``groups``: per row, the comparable group it belongs to (LaTeX shows it as a row above the
    group's rows instead of ``group_column``, the column of short group keys); ``units``: per column,
    a unit the LaTeX header shows on a second line ("nats")."""

    header: list[str]
    rows: list[list[str]]
    bold: list[list[bool]]
    align: str  # one of l / r / p (wrapped text) per column
    notes: list[str] = field(default_factory=list)
    markup: list[bool] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    group_column: int | None = None
    units: list[str] = field(default_factory=list)

    @classmethod
    def plain(cls, header: list[str], rows: list[list[str]], align: str, notes: Sequence[str] = (),
              markup: Sequence[bool] = ()) -> Table:
        """A table without bold cells."""
        return cls(header, rows, [[False] * len(header) for _ in rows], align, list(notes), list(markup))

    def is_markup(self, i: int) -> bool:
        return i < len(self.markup) and self.markup[i]

    def csv(self) -> str:
        """The header and rows as CSV (:func:`to_csv`)."""
        return to_csv(pd.DataFrame(self.rows, columns=self.header))

    def markdown(self, notes: bool = False, link: Callable[[str], str] | None = None) -> str:
        """The table; with ``notes``, its notes as lines below it (for the standalone file); ``link``
        rewrites the links of markup cells (page-relative targets)."""
        lines = ["| " + " | ".join(md_plain(h) for h in self.header) + " |",
                 "|" + "|".join("---:" if a == "r" else "---" for a in self.align) + "|"]
        for row, bold in zip(self.rows, self.bold):
            cells = [md_escape(link(c) if link else c) if self.is_markup(i) else md_plain(c)
                     for i, c in enumerate(row)]
            lines.append("| " + " | ".join(f"**{c}**" if b else c for c, b in zip(cells, bold)) + " |")
        if notes and self.notes:
            lines += [""] + [f"{md_plain(note)}." for note in self.notes]
        return "\n".join(lines) + "\n"

    # HTML ---------------------------------------------------------------------------------------------

    def html_min_width_px(self) -> float:
        """A rough lower bound of the table's width on an HTML page, in pixels: every column as narrow
        as its longest unbreakable piece (a header's word, a number with its ± spread, a cell's word)."""
        total = 0.0
        for i, name in enumerate(self.header):
            widest = max((len(w) for w in name.split()), default=0) * HTML_HEADER_PX
            for row in self.rows:
                widest = max(widest, max((len(w) for w in cell_pieces(row[i], self.is_markup(i))), default=0)
                             * HTML_CHAR_PX)
            total += widest + HTML_CELL_PX
        return total

    # LaTeX --------------------------------------------------------------------------------------------

    def _tex_columns(self) -> tuple[list[int], str]:
        """The columns LaTeX shows and what the caption says instead ("Data set: x."): no group key
        column (:meth:`_tex_groups` are lines above the rows) and no ``dataset`` column (its one
        value is in the caption, or its values are those lines)."""
        columns = [i for i in range(len(self.header)) if i != self.group_column or not self.groups]
        extra = ""
        if "dataset" in self.header and self.rows:
            i = self.header.index("dataset")
            values = {row[i] for row in self.rows}
            if len(values) == 1:
                columns.remove(i)
                extra = f"Data set: {values.pop()}."
            elif self._tex_groups():
                columns.remove(i)
        return columns, extra

    def _tex_groups(self) -> list[str]:
        """Per row, the line LaTeX shows above its group: :attr:`groups`, else the data set where a
        table has several."""
        if self.groups:
            return self.groups
        if "dataset" in self.header:  # the data sets' rows under their names (a table of one row each: a column)
            values = [row[self.header.index("dataset")] for row in self.rows]
            if 1 < len(set(values)) < len(values):
                return values
        return []

    def _tex_text(self, row: list[str], i: int) -> str:
        return display_name(row[i]) if self.header[i] == "method" else row[i]

    def column_width_pt(self, i: int) -> float:
        """A rough width of column ``i`` in LaTeX points, its separation included (a wrapped column at
        its paragraph width when its longest cell is wider)."""
        header = len(self.header[i]) * CHAR_PT + (10 if self.header[i].endswith(("↑", "↓")) else 0)
        unit = len(self.units[i]) * CHAR_PT if i < len(self.units) else 0.0
        cells = max([header, unit] + [_tex_width(self._tex_text(row, i)) for row in self.rows])
        return (min(cells, WRAP_PT) if self._wraps(i) else cells) + COLSEP_PT

    def _wraps(self, i: int) -> bool:
        return self.align[i] == "p" and any(_tex_width(self._tex_text(row, i)) > WRAP_PT for row in self.rows)

    def _row_lines(self, row: list[str], columns: list[int]) -> int:
        return max([1] + [math.ceil(_tex_width(self._tex_text(row, i)) / WRAP_PT) for i in columns if self._wraps(i)])

    def height_pt(self, columns: list[int], caption: str, scale: float = 1.0) -> float:
        """A rough height of the table as a float: caption, header and rows (wrapped lines and group rows)."""
        rows = sum(self._row_lines(row, columns) for row in self.rows)
        groups = len(set(self._tex_groups()))
        header = 2 if any(self.units[i] for i in columns if i < len(self.units)) else 1
        caption_lines = math.ceil(len(caption) / CAPTION_CHARS)
        return (rows + 1.2 * groups + header) * ROW_PT * scale + caption_lines * 12.0 + 30.0

    def latex(self, caption: str, label: str) -> str:
        """One booktabs table for ``\\input{}`` with its caption (and notes) above it, written once:
        numbers in math mode, method display names, units under the headers, long setting labels
        wrapped, each comparable group's rows under its name. ``\\small`` type, ``\\footnotesize``
        where that would be wider than the text. A float (``table*``: the text width, in two-column
        layouts both columns) scaled down to the text width only if it is still wider, sideways
        (pdflscape) when much wider; a ``longtable`` (which breaks across pages) when its estimated
        height would not fit a page; a longtable wider than a sideways page is split into parts by
        columns, the label columns repeated, the caption on the first."""
        columns, extra = self._tex_columns()
        notes = [note for note in self.notes if not (self.groups and note.startswith(GROUP_NOTE))]
        caption = _tex_escape(" ".join([caption, *([extra] if extra else []), *(f"{note}." for note in notes)]))
        width = sum(self.column_width_pt(i) for i in columns)
        size, scale = ("small", 1.0) if width <= TEXT_WIDTH_PT else ("footnotesize", FOOTNOTE_SCALE)
        if scale < 1:
            width = width * scale - (COLSEP_PT - TIGHT_COLSEP_PT) * len(columns)
        sideways = width > LANDSCAPE * TEXT_WIDTH_PT
        page_height = TEXT_WIDTH_PT if sideways else TEXT_HEIGHT_PT
        if self.height_pt(columns, caption, scale) <= FLOAT_SHARE * page_height:
            return self._latex_float(columns, caption, label, sideways, size)
        if width <= TEXT_WIDTH_PT:
            return self._latex_long([columns], caption, label, False, size)
        return self._latex_long(self._parts(columns, (TEXT_HEIGHT_PT - 20) / scale), caption, label, True, size)

    def _parts(self, columns: list[int], limit: float) -> list[list[int]]:
        """``columns`` split into parts no wider than ``limit``, the leading label columns (l / p) in each."""
        keep = [i for i in columns[:next((k for k, i in enumerate(columns) if self.align[i] not in "lp"),
                                         len(columns))]]
        base = sum(self.column_width_pt(i) for i in keep)
        parts: list[list[int]] = []
        width = limit
        for i in columns[len(keep):]:
            w = self.column_width_pt(i)
            if not parts or width + w > limit - base:
                parts.append([])
                width = 0.0
            parts[-1].append(i)
            width += w
        return [keep + part for part in parts] or [columns]

    @staticmethod
    def _colsep(size: str) -> str:
        return f"{(COLSEP_PT if size == 'small' else TIGHT_COLSEP_PT) / 2:g}pt"

    def _spec(self, columns: list[int]) -> str:
        return "".join(rf">{{\raggedright\arraybackslash}}p{{{WRAP_PT:g}pt}}" if self._wraps(i) else
                       ("l" if self.align[i] == "p" else self.align[i]) for i in columns)

    def _head(self, columns: list[int]) -> list[str]:
        lines = [" & ".join(_tex_escape(self.header[i]) for i in columns) + r" \\"]
        if any(self.units[i] for i in columns if i < len(self.units)):
            lines.append(" & ".join(_tex_escape(self.units[i]) if i < len(self.units) and self.units[i] else ""
                                    for i in columns) + r" \\")
        return lines

    def _body(self, columns: list[int]) -> list[str]:
        """The rows, each group's name (:meth:`_tex_groups`) on a line above its rows."""
        body = []
        group = None
        groups = self._tex_groups()
        wraps = {i for i in columns if self._wraps(i)}
        for k, (row, bold) in enumerate(zip(self.rows, self.bold)):
            if groups and groups[k] != group:
                group = groups[k]
                if body:
                    body.append(r"\addlinespace")
                body.append(rf"\multicolumn{{{len(columns)}}}{{@{{}}l}}{{\emph{{{_tex_escape(group)}}}}} \\")
            body.append(" & ".join(_breakable(_tex_cell(self._tex_text(row, i), bold[i])) if i in wraps else
                                   _tex_cell(self._tex_text(row, i), bold[i]) for i in columns) + r" \\")
        return body

    def _needs(self, *extra: str) -> str:
        packages = ", ".join(("booktabs", "array") + extra)
        return rf"% generated by python -m benchmark report; needs \usepackage{{{packages}}}"

    def _latex_float(self, columns: list[int], caption: str, label: str, sideways: bool, size: str) -> str:
        lines = [self._needs("graphicx", *(("pdflscape",) if sideways else ()))]
        lines += [r"\begin{landscape}"] if sideways else []
        lines += [r"\begin{table*}[tbp]", r"\centering", rf"\caption{{{caption}}}\label{{{label}}}", f"\\{size}",
                  rf"\setlength{{\tabcolsep}}{{{self._colsep(size)}}}",
                  rf"\sbox0{{\begin{{tabular}}{{{self._spec(columns)}}}", r"\toprule",
                  *self._head(columns), r"\midrule", *self._body(columns), r"\bottomrule", r"\end{tabular}}%",
                  r"\ifdim\wd0>\linewidth\resizebox{\linewidth}{!}{\usebox0}\else\usebox0\fi", r"\end{table*}"]
        lines += [r"\end{landscape}"] if sideways else []
        return "\n".join(lines) + "\n"

    def _latex_long(self, parts: list[list[int]], caption: str, label: str, sideways: bool, size: str) -> str:
        lines = [self._needs("longtable", *(("pdflscape",) if sideways else ()))]
        lines += [r"\begin{landscape}"] if sideways else []
        for k, columns in enumerate(parts):
            first = (rf"\caption{{{caption}}}\label{{{label}}}\\" if k == 0 else
                     rf"\caption*{{Table~\ref{{{label}}} (continued, part {k + 1} of {len(parts)})}}\\")
            lines += [rf"\begingroup\{size}\setlength{{\tabcolsep}}{{{self._colsep(size)}}}",
                      rf"\begin{{longtable}}{{{self._spec(columns)}}}",
                      first, r"\toprule", *self._head(columns), r"\midrule", r"\endfirsthead",
                      rf"\caption*{{Table~\ref{{{label}}} (continued)}}\\", r"\toprule", *self._head(columns),
                      r"\midrule", r"\endhead", r"\bottomrule", r"\endfoot", *self._body(columns), r"\end{longtable}",
                      r"\endgroup"]
        lines += [r"\end{landscape}"] if sideways else []
        return "\n".join(lines) + "\n"


def _breakable(tex: str) -> str:
    """A wrapped cell's LaTeX with line breaks allowed after ``_`` and ``=`` (long names such as
    ``alpha_schedule=constant`` would overflow a narrow column)."""
    return tex.replace(r"\_", r"\_\allowbreak{}").replace("=", r"=\allowbreak{}")


def cell_pieces(text: str, markup: bool = False) -> list[str]:
    """The pieces a table cell never breaks inside on an HTML page: a number with its ± spread (or
    an AU count k/d), and the words of anything else (of a markup cell: its link texts' words)."""
    if markup:
        text = MARKDOWN_LINK.sub(lambda m: m.group(1), text)
    m = NUMERIC_CELL.fullmatch(text)
    if m is not None and not SEED_LIST.fullmatch(text):
        return [m.group("num")] + m.group("rest").split()
    return text.split()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


def to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.10g", lineterminator="\n")
