"""Text formats of the report: fixed decimals, Markdown and LaTeX escapes, tables, CSV, file names."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
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
             ">": r"\textgreater{}"}
LONG_ROWS = 30  # more rows: longtable (breaks across pages)
TEXT_WIDTH_PT = 469.0  # 6.5 in: a page's text width (letter or A4 with about 1 in margins)
WRAP_PT = 110.0  # width of a wrapped ("p") column, e.g. long setting labels
SYMBOLS = {"beta": "β", "alpha_T": "α_T"}  # hyperparameter names shown as symbols (LaTeX: \beta, \alpha_T)
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
NUMERIC_CELL = re.compile(rf"(?P<num>{NUMBER}(?: ± {NUMBER})?(?: \[{NUMBER}, {NUMBER}\])?)(?P<rest>(?: .*)?)")
SEED_VALUE = rf"(?:{NUMBER}|invalid)"  # a per-seed value, or the word for one its estimator's check rejects
SEED_LIST = re.compile(rf"{SEED_VALUE}(?: {SEED_VALUE})+")


def symbol_text(text: str) -> str:
    """``name=value`` parts of a setting label with the symbols of :data:`SYMBOLS` (β=0.2, α_T=1)."""
    return re.sub(r"(?<![A-Za-z_])(alpha_T|beta)(?==)", lambda m: SYMBOLS[m.group(1)], str(text))


def _tex_escape(text: str) -> str:
    text = str(text).replace("α_T", "\x00")  # the symbol α_T as one piece
    return "".join(TEX_CHARS.get(ch, ch) for ch in text).replace("\x00", r"$\alpha_T$")


def _tex_number(text: str) -> str:
    """A number (maybe with ± and a [low, high] interval) in math mode notation, e-notation as 10^k."""
    def one(m: re.Match) -> str:
        mantissa, _, exponent = m.group(0).partition("e")
        return mantissa if not exponent else rf"{mantissa} \times 10^{{{int(exponent)}}}"
    body = re.sub(NUMBER, one, text).replace(" ± ", r" \pm ").replace(", ", ",\\,")
    return body.replace(" [", r"\;[")


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
    return f"${body}$" + _tex_escape(m.group("rest"))


@dataclass
class Table:
    """A table as header + rows of cell texts, with bold flags; rendered as Markdown / LaTeX."""

    header: list[str]
    rows: list[list[str]]
    bold: list[list[bool]]
    align: str  # one of l / r / p (wrapped text) per column
    notes: list[str] = field(default_factory=list)

    @classmethod
    def plain(cls, header: list[str], rows: list[list[str]], align: str, notes: Sequence[str] = ()) -> Table:
        """A table without bold cells."""
        return cls(header, rows, [[False] * len(header) for _ in rows], align, list(notes))

    def csv(self) -> str:
        """The header and rows as CSV (:func:`to_csv`)."""
        return to_csv(pd.DataFrame(self.rows, columns=self.header))

    def markdown(self, notes: bool = False) -> str:
        """The table; with ``notes``, its notes as lines below it (for the standalone file)."""
        lines = ["| " + " | ".join(md_plain(h) for h in self.header) + " |",
                 "|" + "|".join("---:" if a == "r" else "---" for a in self.align) + "|"]
        for row, bold in zip(self.rows, self.bold):
            cells = [f"**{md_plain(c)}**" if b else md_plain(c) for c, b in zip(row, bold)]
            lines.append("| " + " | ".join(cells) + " |")
        if notes and self.notes:
            lines += [""] + [f"{md_plain(note)}." for note in self.notes]
        return "\n".join(lines) + "\n"

    def column_width_pt(self, i: int) -> float:
        """A rough width of column ``i`` in LaTeX points (\\small characters about 5 pt, 8 pt
        between columns; a wrapped column at its paragraph width)."""
        if self.align[i] == "p":
            return WRAP_PT + 8
        cells = [self.header[i]] + [row[i] for row in self.rows]
        return max(len(re.sub(r" ± ", "±", str(c))) for c in cells) * 5.0 + 8

    def parts(self) -> list[list[int]]:
        """Column indices of the LaTeX tables this one is split into so that each fits the text
        width: the leading label columns (l / p) repeated in each, the others packed in order."""
        keep = next((i for i, a in enumerate(self.align) if a not in "lp"), len(self.align))
        base = sum(self.column_width_pt(i) for i in range(keep))
        parts: list[list[int]] = []
        width = TEXT_WIDTH_PT
        for i in range(keep, len(self.align)):
            w = self.column_width_pt(i)
            if not parts or width + w > TEXT_WIDTH_PT - base:
                parts.append([])
                width = 0.0
            parts[-1].append(i)
            width += w
        return [list(range(keep)) + part for part in parts] or [list(range(len(self.align)))]

    def latex(self, caption: str, label: str) -> str:
        """Booktabs tables for ``\\input{}``: numbers in math mode, long setting labels wrapped,
        split into several tables (the label columns repeated) where one would be wider than the
        text, ``longtable`` beyond :data:`LONG_ROWS` rows, sideways (pdflscape) only where even one
        part is wider than the text; the notes follow the ``caption``."""
        parts = self.parts()
        out = []
        for k, columns in enumerate(parts):
            text = caption + (f" (part {k + 1} of {len(parts)})" if len(parts) > 1 else "")
            out.append(self._latex_part(columns, text, label + (f"-{k + 1}" if len(parts) > 1 else "")))
        return "\n".join(out)

    def _latex_part(self, columns: list[int], caption: str, label: str) -> str:
        caption = _tex_escape(" ".join([caption, *(f"{note}." for note in self.notes)]))
        align = "".join(self.align[i] for i in columns)
        spec = "".join(rf">{{\raggedright\arraybackslash}}p{{{WRAP_PT:g}pt}}" if a == "p" else a for a in align)
        wide = sum(self.column_width_pt(i) for i in columns) > TEXT_WIDTH_PT
        long = len(self.rows) > LONG_ROWS
        head = " & ".join(_tex_escape(self.header[i]) for i in columns) + r" \\"
        body = []
        previous = None
        for row, bold in zip(self.rows, self.bold):
            if previous is not None and row[0] != previous:
                body.append(r"\addlinespace")
            previous = row[0]
            body.append(" & ".join(_tex_cell(row[i], bold[i]) for i in columns) + r" \\")
        needs = "booktabs, array" + (", longtable" if long else "") + (", pdflscape" if wide else "")
        lines = [rf"% generated by python -m benchmark report; needs \usepackage{{{needs}}}"]
        if wide:
            lines.append(r"\begin{landscape}")
        if long:
            lines += [r"\begingroup\small\setlength{\tabcolsep}{4pt}", rf"\begin{{longtable}}{{{spec}}}",
                      rf"\caption{{{caption}}}\label{{{label}}}\\", r"\toprule", head, r"\midrule", r"\endfirsthead",
                      r"\toprule", head, r"\midrule", r"\endhead", r"\bottomrule", r"\endlastfoot",
                      *body, r"\end{longtable}", r"\endgroup"]
        else:
            lines += [r"\begin{table}[t]" if not wide else r"\begin{table}", r"\centering", r"\small",
                      r"\setlength{\tabcolsep}{4pt}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule", head, r"\midrule",
                      *body, r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", rf"\label{{{label}}}",
                      r"\end{table}"]
        if wide:
            lines.append(r"\end{landscape}")
        return "\n".join(lines) + "\n"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


def to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.10g", lineterminator="\n")
