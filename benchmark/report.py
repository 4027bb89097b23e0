"""``python -m benchmark report``: paper-style tables, statistics and figures from stored run records.

Reads ``<results>/<grid>/runs/*.json`` (and the PNGs stored beside them) and nothing else: it never
imports torch or training code and never retrains. Writes (see docs/report.md)::

    <out>/README.md                          one page: per grid the headline table, the comparison
                                             with the plain VAE, every figure, what is missing
    <out>/<grid>/tables/<dataset>.{md,tex,csv}   every method x setting: mean ± std over seeds, n
    <out>/<grid>/tables/headline.{md,tex,csv}    best setting per method per data set
    <out>/<grid>/tables/vs_vae.{md,tex,csv}      Welch's t-test and Cohen's d against `vae`
    <out>/<grid>/figures/<kind>.<dataset>.{png,pdf}
    <out>/<grid>/images/<run_id>.<name>.png      stored reconstructions / samples / noise grids
    <out>/<grid>/MANIFEST                        the files above (stale ones are removed next time)

Output is deterministic: rows are sorted, floats have fixed formats, figures carry no dates or
version strings, so running twice on the same records gives byte-identical files.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import re
import sys
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from .run.store import ResultStore
from .run.table import records_table, setting_columns

GRID_DIR = Path(__file__).resolve().parent / "grids"
BASELINE = "vae"
NOT_RECORDED = "not recorded"
N_TOO_SMALL = "n too small"
MI_CAP_MARGIN = 0.25  # nats: benchmark.config.MI_CAP_MARGIN (not imported: config pulls in torch)
AT_CAP = " (at cap)"


@dataclass(frozen=True)
class Column:
    """A reported metric: record key, header, which direction is "best" (None: no best), decimals."""

    key: str
    header: str
    best: str | None
    decimals: int
    meaning: str


COLUMNS = [
    Column("au", "AU", "max", 3, "active units, fraction of latent dims (higher is better: the remedies' goal)"),
    Column("kl", "KL", None, 2, "mean KL(q(z|x) || p(z)) in nats: the rate; no best is marked "
                                "(more is not better or worse on its own)"),
    Column("mi", "MI", "max", 2, "I_q(x; z) in nats (higher is better up to its cap log N, N = the size of "
                                 "the aggregate-posterior mixture; \"(at cap)\": within the margin of the cap, "
                                 "where every code identifies its example, never marked best)"),
    Column("nll", "IW-NLL", "min", 2, "importance-weighted negative log-likelihood in nats "
                                      "(lower is better)"),
    Column("rec", "rec", "min", 2, "reconstruction loss in the likelihood's units (lower is better)"),
    Column("wall_time_s", "time (s)", "min", 1, "wall time per run in seconds (lower is better; "
                                                "comparable on the same device only)"),
]
COLUMN = {c.key: c for c in COLUMNS}
# rec and IW-NLL are only compared between rows with the same likelihood
SAME_LIKELIHOOD = {"rec", "nll"}
COMPARED = ["au", "kl", "mi", "nll", "rec"]


# ---------------------------------------------------------------- loading --------------------------------


@dataclass
class Run:
    record: dict[str, Any]
    setting: dict[str, Any]  # setting columns (records_table's names) -> plain value or None

    @property
    def run_id(self) -> str:
        return self.record["run_id"]

    @property
    def status(self) -> str:
        return str(self.record.get("status"))

    @property
    def seed(self) -> Any:
        return self.record["config"]["seed"]

    def metric(self, key: str) -> float | None:
        value = self.record.get("wall_time_s") if key == "wall_time_s" else (self.record.get("metrics") or {}).get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return float(value)


@dataclass
class Setting:
    """One method x hyperparameter x model / train / data setting of one data set: its seeds."""

    key: str
    dataset: str
    method: str
    values: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    label: str = ""
    parts: list[tuple[str, str]] = field(default_factory=list)  # (column, "name=value") behind the label
    sort_key: tuple = ()

    @property
    def ok(self) -> list[Run]:
        return sorted((r for r in self.runs if r.status == "ok"), key=lambda r: (_order(r.seed), r.run_id))

    def values_of(self, key: str) -> list[float]:
        return [v for v in (r.metric(key) for r in self.ok) if v is not None]

    def mean_std(self, key: str) -> tuple[float | None, float | None, int]:
        values = self.values_of(key)
        if not values:
            return None, None, 0
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
        return mean, std, len(values)

    def not_ok(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self.runs:
            if run.status != "ok":
                counts[run.status] = counts.get(run.status, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def likelihood(self) -> Any:
        return self.values.get("model.likelihood")

    def mi_cap(self) -> tuple[float, float, int] | None:
        """MI cap log N (nats, the mean over the ok runs with MI that record ``estimators.mi_cap``),
        the margin within which the mean MI counts as at cap (``estimators.mi_cap_margin``, default
        :data:`MI_CAP_MARGIN`) and the mixture size N; None when no run records a cap."""
        caps, margins, sizes = [], [], set()
        for run in self.ok:
            estimators = run.record.get("estimators") or {}
            cap, margin = estimators.get("mi_cap"), estimators.get("mi_cap_margin")
            if run.metric("mi") is None or not _finite(cap):
                continue
            caps.append(float(cap))
            margins.append(float(margin) if _finite(margin) else MI_CAP_MARGIN)
            size = estimators.get("mi_mixture_size")
            sizes.add(int(size) if _finite(size) else round(math.exp(cap)))
        if not caps:
            return None
        return math.fsum(caps) / len(caps), math.fsum(margins) / len(margins), max(sizes)

    def mi_at_cap(self) -> bool:
        """Whether the mean MI over seeds is within the margin of the cap (False without a cap)."""
        cap, mean = self.mi_cap(), self.mean_std("mi")[0]
        return cap is not None and mean is not None and mean >= cap[0] - cap[1]


@dataclass
class GridData:
    name: str
    runs_dir: Path
    runs: list[Run]
    unreadable: list[tuple[str, str]]
    settings: list[Setting] = field(default_factory=list)

    def datasets(self) -> list[str]:
        return sorted({s.dataset for s in self.settings})

    def settings_of(self, dataset: str) -> list[Setting]:
        return [s for s in self.settings if s.dataset == dataset]


def _finite(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value: Any) -> Any:
    """numpy / pandas scalars -> Python; NaN / NA -> None."""
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _order(value: Any) -> tuple:
    """A total order over mixed values: None first, then numbers, then text."""
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, bool):
        return (1, float(value), "")
    if isinstance(value, (int, float)):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def _method_order(method: str) -> tuple:
    return (method != BASELINE, method)


def load_grid_records(grid_dir: Path) -> GridData:
    store = ResultStore(grid_dir.parent, grid_dir.name)
    runs_dir = store.runs_dir
    good, unreadable = store.scan()
    runs: list[Run] = []
    if good:
        table = records_table(good)
        by_id = {r.run_id: r.to_dict() for r in good}
        columns = setting_columns(table)
        for _, row in table.iterrows():
            setting = {c: _plain(row[c]) for c in columns}
            runs.append(Run(by_id[row["run_id"]], setting))
    data = GridData(grid_dir.name, runs_dir, runs, unreadable)
    data.settings = _group_settings(runs, _named_hyperparameters(grid_file(grid_dir.name)))
    return data


def grid_file(name: str) -> dict[str, Any] | None:
    """The parsed ``benchmark/grids/<name>.toml`` (read as plain TOML: no registry, no torch), or None."""
    try:
        data = tomllib.loads((GRID_DIR / f"{name}.toml").read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _named_hyperparameters(grid: dict[str, Any] | None) -> dict[str, set[str]]:
    named: dict[str, set[str]] = {}
    for entry in (grid or {}).get("methods", []):
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            named.setdefault(entry["name"], set()).update(k for k in entry if k not in ("name", "model", "train"))
    return named


def _group_settings(runs: list[Run], named: dict[str, set[str]] | None = None) -> list[Setting]:
    """Settings (sorted: data set, `vae` first then methods by name, then setting values) with labels
    naming the hyperparameters that vary within the method or that the grid file names for it, and
    any model / train / data / eval setting that varies within the data set."""
    groups: dict[str, Setting] = {}
    for run in runs:
        key = json.dumps(sorted(run.setting.items()), default=str)
        if key not in groups:
            groups[key] = Setting(key, run.setting["dataset"], run.setting["method"], dict(run.setting))
        groups[key].runs.append(run)
    settings = list(groups.values())
    for dataset in sorted({s.dataset for s in settings}):
        in_dataset = [s for s in settings if s.dataset == dataset]
        shared = [c for c in _all_columns(in_dataset) if not c.startswith("hp.") and c not in ("dataset", "method")
                  and len({json.dumps(s.values.get(c), default=str) for s in in_dataset}) > 1]
        for method in sorted({s.method for s in in_dataset}):
            mine = [s for s in in_dataset if s.method == method]
            listed = {f"hp.{k}" for k in (named or {}).get(method, set())}
            varying = [c for c in _all_columns(mine) if c.startswith("hp.") and (
                c in listed or len({json.dumps(s.values.get(c), default=str) for s in mine}) > 1)] + shared
            for s in mine:
                s.parts = [(c, f"{_short(c)}={_value_text(s.values.get(c))}") for c in varying]
                s.label = ", ".join(text for _, text in s.parts) or "—"
                s.sort_key = (_method_order(method), tuple(_order(s.values.get(c)) for c in varying), s.key)
    return sorted(settings, key=lambda s: (s.dataset, s.sort_key))


def _all_columns(settings: Iterable[Setting]) -> list[str]:
    return sorted({c for s in settings for c in s.values})


def _short(column: str) -> str:
    return column.split(".", 1)[1] if "." in column else column


def _value_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def find_grids(results: Path, only: str | None) -> list[Path]:
    if not results.is_dir():
        return []
    found = sorted(p for p in results.iterdir() if p.is_dir() and any((p / "runs").glob("*.json")))
    return [p for p in found if only is None or p.name == only]


# ---------------------------------------------------------------- formatting ------------------------------


def _fixed(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text[1:] if re.fullmatch(r"-0\.?0*", text) else text


def cell_text(setting: Setting, key: str) -> tuple[str, float | None]:
    """``mean ± std`` at the column's decimals (``mean`` alone for one seed; `` (at cap)`` after an
    MI at its cap); the rounded mean."""
    column = COLUMN[key]
    mean, std, n = setting.mean_std(key)
    if n == 0:
        return (NOT_RECORDED if setting.ok else "—"), None
    text = _fixed(mean, column.decimals) + ("" if std is None else f" ± {_fixed(std, column.decimals)}")
    if n < len(setting.ok):
        text += f" (n={n})"
    if key == "mi" and setting.mi_at_cap():
        text += AT_CAP
    return text, round(mean, column.decimals)


def best_rows(settings: Sequence[Setting], key: str) -> tuple[set[str], str | None]:
    """Keys of the settings with the best rounded mean in column ``key`` (ties: all), or a reason
    why no best is marked."""
    column = COLUMN[key]
    if column.best is None:
        return set(), None
    values = {s.key: cell_text(s, key)[1] for s in settings}
    values = {k: v for k, v in values.items() if v is not None}
    if len(values) < 2:
        return set(), None
    if key in SAME_LIKELIHOOD and len({json.dumps(s.likelihood) for s in settings if s.key in values}) > 1:
        return set(), f"no best {column.header} marked: rows use different likelihoods"
    target = max(values.values()) if column.best == "max" else min(values.values())
    best = {k for k, v in values.items() if v == target}
    if key == "mi":  # a saturated MI is not "more information": never ranked
        best -= {s.key for s in settings if s.mi_at_cap()}
        if not best:
            return set(), f"no best {column.header} marked: the highest is at its cap"
    return best, None


def _marks(settings: Sequence[Setting]) -> tuple[dict[str, set[str]], list[str]]:
    """Best rows per column, within each data set; notes on columns left unmarked."""
    marks: dict[str, set[str]] = {c.key: set() for c in COLUMNS}
    notes: list[str] = []
    datasets = sorted({s.dataset for s in settings})
    for dataset in datasets:
        for column in COLUMNS:
            best, note = best_rows([s for s in settings if s.dataset == dataset], column.key)
            marks[column.key] |= best
            if note:
                notes.append(note + (f" ({dataset})" if len(datasets) > 1 else ""))
    return marks, notes


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _tex_escape(text: str) -> str:
    replace = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "---",
               "±": r"$\pm$", "≥": r"$\geq$", "Δ": r"$\Delta$"}
    return "".join(replace.get(ch, ch) for ch in str(text))


def _tex_cell(text: str, bold: bool) -> str:
    m = re.fullmatch(r"(-?[0-9.]+)(?: ± ([0-9.]+))?((?: \(n=\d+\))?(?: \(at cap\))?)", text)
    if not m:
        return _tex_escape(text)
    body = m.group(1) + (rf" \pm {m.group(2)}" if m.group(2) else "")
    body = rf"\mathbf{{{body}}}" if bold else body
    return f"${body}$" + _tex_escape(m.group(3))


@dataclass
class Table:
    """A table as header + rows of cell texts, with bold flags; rendered as Markdown / LaTeX."""

    header: list[str]
    rows: list[list[str]]
    bold: list[list[bool]]
    align: str  # one of l / r per column
    notes: list[str] = field(default_factory=list)

    def markdown(self, notes: bool = False) -> str:
        """The table; with ``notes``, its notes as lines below it (for the standalone file)."""
        lines = ["| " + " | ".join(_md_escape(h) for h in self.header) + " |",
                 "|" + "|".join("---:" if a == "r" else "---" for a in self.align) + "|"]
        for row, bold in zip(self.rows, self.bold):
            cells = [f"**{_md_escape(c)}**" if b else _md_escape(c) for c, b in zip(row, bold)]
            lines.append("| " + " | ".join(cells) + " |")
        if notes and self.notes:
            lines += [""] + [f"{_md_escape(note)}." for note in self.notes]
        return "\n".join(lines) + "\n"

    def latex(self, caption: str, label: str) -> str:
        """A booktabs table; its notes follow the ``caption``."""
        caption = " ".join([caption, *(f"{note}." for note in self.notes)])
        lines = [r"% generated by python -m benchmark report; needs \usepackage{booktabs}",
                 r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{self.align}}}", r"\toprule",
                 " & ".join(_tex_escape(h) for h in self.header) + r" \\", r"\midrule"]
        previous = None
        for row, bold in zip(self.rows, self.bold):
            if previous is not None and row[0] != previous:
                lines.append(r"\addlinespace")
            previous = row[0]
            lines.append(" & ".join(_tex_cell(c, b) for c, b in zip(row, bold)) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_tex_escape(caption)}}}",
                  rf"\label{{{label}}}", r"\end{table}"]
        return "\n".join(lines) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


# ---------------------------------------------------------------- tables ----------------------------------


def settings_table(settings: Sequence[Setting], with_dataset: bool = False,
                   extra: dict[str, list[str]] | None = None) -> Table:
    header = (["dataset"] if with_dataset else []) + ["method", "setting"] + [c.header for c in COLUMNS] + ["n"]
    marks, notes = _marks(settings)
    show_not_ok = any(s.not_ok() for s in settings)
    if show_not_ok:
        header.append("not ok")
    for name in extra or {}:
        header.append(name)
    rows, bold = [], []
    for i, s in enumerate(settings):
        row = ([s.dataset] if with_dataset else []) + [s.method, s.label]
        flags = [False] * len(row)
        for column in COLUMNS:
            row.append(cell_text(s, column.key)[0])
            flags.append(s.key in marks[column.key])
        row.append(str(len(s.ok)))
        flags.append(False)
        if show_not_ok:
            row.append(", ".join(f"{v} {k}" for k, v in s.not_ok().items()) or "")
            flags.append(False)
        for values in (extra or {}).values():
            row.append(values[i])
            flags.append(False)
        rows.append(row)
        bold.append(flags)
    align = ("l" * (3 if with_dataset else 2) + "r" * (len(COLUMNS) + 1) + ("l" if show_not_ok else "")
             + "r" * len(extra or {}))
    mi_note = mi_cap_note(settings)
    return Table(header, rows, bold, align, notes + ([mi_note] if mi_note else []))


def mi_cap_note(settings: Sequence[Setting]) -> str | None:
    """The note under a table with an MI column: the cap log N and what "(at cap)" means; None
    when no setting has MI."""
    if not any(s.values_of("mi") for s in settings):
        return None
    caps = [c for c in (s.mi_cap() for s in settings) if c is not None]
    here = ", ".join(f"log {n} = {cap:.2f} nats" for n, cap in sorted({(c[2], round(c[0], 2)) for c in caps}))
    margin = " or ".join(f"{m:g}" for m in sorted({round(c[1], 6) for c in caps} or {MI_CAP_MARGIN}))
    return ("MI is at most its cap log N, N = the size of the aggregate-posterior mixture (the entropy of N "
            "equally likely examples): " + (here if caps else "not recorded, so nothing is flagged")
            + f"; a value marked (at cap) has its mean over seeds within {margin} nats of the cap: every code "
            "identifies its example, which is not more information, so it is never marked best")


def settings_csv(settings: Sequence[Setting]) -> str:
    """Raw numbers: the setting columns, mean / std / n of every scalar metric, and which columns
    the row is best in."""
    metric_keys = sorted({k for s in settings for r in s.ok for k, v in (r.record.get("metrics") or {}).items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)} | {"wall_time_s"})
    value_columns = sorted({c for s in settings for c in s.values} - {"dataset", "method"})
    marks = _marks(settings)[0]
    rows = []
    for s in settings:
        row: dict[str, Any] = {"dataset": s.dataset, "method": s.method, "setting": s.label}
        row.update({c: s.values.get(c) for c in value_columns})
        row["n"] = len(s.ok)
        row["seeds"] = " ".join(str(r.seed) for r in s.ok)
        row["not_ok"] = "; ".join(f"{v} {k}" for k, v in s.not_ok().items())
        for key in metric_keys:
            mean, std, n = s.mean_std(key)
            row[f"{key}_mean"], row[f"{key}_std"], row[f"{key}_n"] = mean, std, n
        if "mi" in metric_keys:
            cap = s.mi_cap()
            row["mi_cap"], row["mi_at_cap"] = (cap[0] if cap else None), s.mi_at_cap()
        row["best"] = " ".join(c.key for c in COLUMNS if s.key in marks[c.key])
        rows.append(row)
    return _csv(pd.DataFrame(rows))


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.10g", lineterminator="\n")


def headline_choice(settings: Sequence[Setting]) -> Setting | None:
    """The best setting of one method on one data set: highest mean AU; ties -> lowest mean
    IW-NLL (-ELBO where IW-NLL is not recorded for all tied settings) -> the setting label."""
    candidates = [s for s in settings if s.values_of("au")]
    if not candidates:
        return None
    top = max(s.mean_std("au")[0] for s in candidates)
    tied = [s for s in candidates if s.mean_std("au")[0] == top]
    tie_metric = "nll" if all(s.values_of("nll") for s in tied) else "neg_elbo"

    def key(s: Setting) -> tuple:
        value = s.mean_std(tie_metric)[0]
        return (value is None, value if value is not None else 0.0, s.sort_key)

    return min(tied, key=key)


def headlines(data: GridData) -> list[Setting]:
    chosen = []
    for dataset in data.datasets():
        for method in sorted({s.method for s in data.settings_of(dataset)}, key=_method_order):
            best = headline_choice([s for s in data.settings_of(dataset) if s.method == method])
            if best is not None:
                chosen.append(best)
    return chosen


# ---------------------------------------------------------------- statistics ------------------------------


@dataclass
class Comparison:
    setting: Setting
    baseline: Setting | None
    note: str  # how the baseline was matched, or why there is none
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def find_baseline(setting: Setting, settings: Sequence[Setting]) -> tuple[Setting | None, str]:
    """The `vae` setting on the same data set and architecture: identical model / train / data /
    eval settings if there is one; else the only one with the same model settings (the note names
    what differs)."""
    pool = [s for s in settings if s.method == BASELINE and s.dataset == setting.dataset]
    if not pool:
        return None, f"no {BASELINE} runs on {setting.dataset}"
    config = [c for c in _all_columns([setting, *pool]) if not c.startswith("hp.") and c not in ("method",)]
    same = [b for b in pool if all(b.values.get(c) == setting.values.get(c) for c in config)]
    if len(same) == 1:
        return same[0], ""
    model = [c for c in config if c.startswith("model.") or c == "dataset"]
    same_model = [b for b in pool if all(b.values.get(c) == setting.values.get(c) for c in model)]
    if len(same_model) == 1:
        differ = [c for c in config if same_model[0].values.get(c) != setting.values.get(c)]
        return same_model[0], "baseline differs in " + ", ".join(differ)
    if not same_model:
        return None, f"no {BASELINE} run with the same architecture"
    return None, f"{len(same_model)} {BASELINE} settings with the same architecture; none matches exactly"


def welch(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Welch's t-test (scipy.stats.ttest_ind, equal_var=False) of ``a`` against ``b`` and Cohen's d
    with the pooled standard deviation; ``note`` says why p is missing."""
    from scipy import stats

    out: dict[str, Any] = {"n": len(a), "n_base": len(b), "mean": None, "mean_base": None, "diff": None,
                           "t": None, "p": None, "d": None, "note": ""}
    if a:
        out["mean"] = math.fsum(a) / len(a)
    if b:
        out["mean_base"] = math.fsum(b) / len(b)
    if a and b:
        out["diff"] = out["mean"] - out["mean_base"]
    if len(a) < 2 or len(b) < 2:
        out["note"] = N_TOO_SMALL if (a and b) else NOT_RECORDED
        return out
    var_a = math.fsum((x - out["mean"]) ** 2 for x in a) / (len(a) - 1)
    var_b = math.fsum((x - out["mean_base"]) ** 2 for x in b) / (len(b) - 1)
    pooled = math.sqrt(((len(a) - 1) * var_a + (len(b) - 1) * var_b) / (len(a) + len(b) - 2))
    if var_a == 0 and var_b == 0:
        out["note"] = "undefined: no spread"
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.ttest_ind(a, b, equal_var=False)
    if not (math.isfinite(result.statistic) and math.isfinite(result.pvalue)):
        out["note"] = "undefined"
        return out
    out["t"], out["p"] = float(result.statistic), float(result.pvalue)
    out["d"] = out["diff"] / pooled if pooled > 0 else None
    return out


def holm(pvalues: dict[Any, float]) -> dict[Any, float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    ordered = sorted(pvalues.items(), key=lambda kv: (kv[1], str(kv[0])))
    m, running, out = len(ordered), 0.0, {}
    for i, (key, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - i) * p))
        out[key] = running
    return out


def compare_with_vae(data: GridData) -> list[Comparison]:
    comparisons = []
    for s in data.settings:
        if s.method == BASELINE or not s.ok:
            continue
        base, note = find_baseline(s, data.settings)
        if base is not None and not base.ok:
            base, note = None, f"no ok {BASELINE} runs with the same setting"
        comp = Comparison(s, base, note)
        if base is not None:
            for key in COMPARED:
                comp.results[key] = welch(s.values_of(key), base.values_of(key))
        comparisons.append(comp)
    for dataset in data.datasets():
        for key in COMPARED:
            family = {c.setting.key: c.results[key]["p"] for c in comparisons
                      if c.setting.dataset == dataset and key in c.results and c.results[key]["p"] is not None}
            for k, p in holm(family).items():
                next(c for c in comparisons if c.setting.key == k).results[key]["p_holm"] = p
    return comparisons


def _p_text(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def _stat_cells(result: dict[str, Any] | None, decimals: int) -> list[str]:
    """Δ mean, p (Welch), p (Holm), Cohen's d."""
    if result is None:
        return ["—", "—", "—", "—"]
    diff = "—" if result["diff"] is None else ("+" if result["diff"] > 0 else "") + _fixed(result["diff"], decimals)
    if result["p"] is None:
        return [diff, result["note"] or "—", "—", "—"]
    d = "—" if result["d"] is None else f"{result['d']:+.2f}"
    return [diff, _p_text(result["p"]), _p_text(result.get("p_holm")), d]


def comparison_table(comparisons: Sequence[Comparison], keys: Sequence[str]) -> Table:
    header = ["dataset", "method", "setting", "n (vs vae)"]
    for key in keys:
        h = COLUMN[key].header
        header += [f"Δ{h}", f"p ({h})", f"p Holm ({h})", f"d ({h})"]
    header.append("note")
    rows = []
    for c in comparisons:
        n_base = len(c.baseline.ok) if c.baseline else 0
        row = [c.setting.dataset, c.setting.method, c.setting.label, f"{len(c.setting.ok)} vs {n_base}"]
        for key in keys:
            row += _stat_cells(c.results.get(key), COLUMN[key].decimals)
        row.append(c.note)
        rows.append(row)
    align = "llll" + "rrrr" * len(keys) + "l"
    return Table(header, rows, [[False] * len(header) for _ in rows], align)


def comparison_csv(comparisons: Sequence[Comparison]) -> str:
    rows = []
    for c in comparisons:
        for key in COMPARED:
            r = c.results.get(key) or {}
            rows.append({"dataset": c.setting.dataset, "method": c.setting.method, "setting": c.setting.label,
                         "baseline": _legend(c.baseline) if c.baseline else None, "metric": key,
                         "n": r.get("n", len(c.setting.ok)), "n_vae": r.get("n_base"),
                         "mean": r.get("mean"), "mean_vae": r.get("mean_base"), "diff": r.get("diff"),
                         "test": "welch_t" if r.get("p") is not None else None, "t": r.get("t"), "p": r.get("p"),
                         "p_holm": r.get("p_holm"), "cohens_d": r.get("d"),
                         "note": "; ".join(x for x in (c.note, r.get("note", "")) if x)})
    frame = pd.DataFrame(rows, columns=["dataset", "method", "setting", "baseline", "metric", "n", "n_vae", "mean",
                                        "mean_vae", "diff", "test", "t", "p", "p_holm", "cohens_d", "note"])
    return frame.to_csv(index=False, float_format="%.10g", lineterminator="\n")


# ---------------------------------------------------------------- missing ---------------------------------


def _first_line(text: Any, limit: int = 200) -> str:
    line = str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _same(recorded: Any, planned: Any, whole: Any) -> bool:
    if recorded == planned:
        return True
    return isinstance(recorded, list) and isinstance(whole, list) and recorded == whole


def planned_missing(data: GridData) -> tuple[list[str], str | None]:
    """Runs of ``benchmark/grids/<grid>.toml`` without a record (matched on data set, method, the
    hyperparameters the grid file names, and seed); a note when there is no grid file."""
    grid = grid_file(data.name)
    if grid is None:
        return [], (f"no (readable) grid file `benchmark/grids/{data.name}.toml`, so runs not started yet cannot "
                    "be listed; settings with fewer seeds than the others are listed instead")
    try:
        seeds = list(grid.get("seeds", [0]))
        datasets = [d["name"] for d in grid.get("datasets", [])]
        entries = list(grid.get("methods", []))
    except (KeyError, TypeError) as exc:
        return [], f"grid file `{data.name}.toml` not understood ({exc}); runs not started yet cannot be listed"
    explicit = {e.get("name") for e in entries if isinstance(e, dict)}
    lines = []
    for dataset in datasets:
        records = [r for r in data.runs if r.setting["dataset"] == dataset]
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            name = entry.get("name")
            if name == "*":
                methods = sorted({r.setting["method"] for r in records} - explicit, key=_method_order)
                for method in methods:
                    have = {r.seed for r in records if r.setting["method"] == method}
                    absent = [s for s in seeds if s not in have]
                    if absent:
                        seeds_text = ", ".join(map(str, absent))
                        lines.append(f"{dataset} · {method} (defaults) · seeds {seeds_text}: not run yet")
                continue
            hp = {k: v for k, v in entry.items() if k not in ("name", "model", "train")}
            keys = sorted(hp)
            axes = [hp[k] if isinstance(hp[k], list) else [hp[k]] for k in keys]
            mine = [r for r in records if r.setting["method"] == name]
            for combo in itertools.product(*axes):
                match = [r for r in mine if all(_same(r.record["config"]["hyperparameters"].get(k), v, hp[k])
                                                for k, v in zip(keys, combo))]
                have = {r.seed for r in match}
                absent = [s for s in seeds if s not in have]
                if absent:
                    label = ", ".join(f"{k}={_value_text(v)}" for k, v in zip(keys, combo)) or "defaults"
                    lines.append(f"{dataset} · {name} ({label}) · seeds {', '.join(map(str, absent))}: not run yet")
    note = None
    if "*" in explicit:
        note = ("the grid's `name = \"*\"` entry stands for every registered method; methods without any "
                "record cannot be listed without the method registry")
    return lines, note


def seed_gaps(data: GridData) -> list[str]:
    """Settings with fewer seeds than the grid's union of seeds."""
    seeds = sorted({r.seed for r in data.runs}, key=_order)
    lines = []
    for s in data.settings:
        have = {r.seed for r in s.runs}
        absent = [x for x in seeds if x not in have]
        if absent:
            lines.append(f"{s.dataset} · {s.method} ({s.label}) · seeds {', '.join(map(str, absent))}: no record")
    return lines


def missing_section(data: GridData) -> list[str]:
    out: list[str] = []
    planned, note = planned_missing(data)
    if note:
        out.append(f"- Note: {note}.")
    if grid_file(data.name) is None:
        planned = seed_gaps(data)
    if planned:
        out.append(f"- **Not run yet** ({len(planned)}):")
        out += [f"  - {line}" for line in planned]
    bad = sorted((r for r in data.runs if r.status != "ok"), key=lambda r: (r.setting["dataset"], r.status, r.run_id))
    for status in sorted({r.status for r in bad}):
        group = [r for r in bad if r.status == status]
        out.append(f"- **{status.capitalize()}** ({len(group)}):")
        for r in group:
            label = r.record.get("label") or f"{r.setting['method']} seed {r.seed}"
            error = r.record.get("error") or {}
            reason = _first_line(error.get("message")) or "no error message recorded"
            if status == "diverged" and r.record.get("diverged_epoch") is not None:
                reason = f"epoch {r.record['diverged_epoch']}: {reason}"
            elif error.get("type"):
                reason = f"{error['type']}: {reason}"
            out.append(f"  - `{r.run_id}` {_md_escape(label)} — {_md_escape(reason)}")
    if data.unreadable:
        out.append(f"- **Unreadable records** ({len(data.unreadable)}), ignored:")
        out += [f"  - `{name}` — {_md_escape(_first_line(reason))}" for name, reason in data.unreadable]
    ok = [r for r in data.runs if r.status == "ok"]
    # a field that is present but empty was recorded (e.g. `artifacts: {}` for 2-D data without images)
    fields = [("IW-NLL (`metrics.nll`)", lambda r: r.metric("nll") is not None),
              ("MI (`metrics.mi`)", lambda r: r.metric("mi") is not None),
              ("per-class AU (`per_class`)", lambda r: "per_class" in r.record),
              ("noise sensitivity (`noise`)", lambda r: "noise" in r.record),
              ("stored images (`artifacts`)", lambda r: "artifacts" in r.record),
              ("MI curve points (`curves[].test_mi`)",
               lambda r: any("test_mi" in p for p in r.record.get("curves") or []))]
    for name, has in fields:
        lacking = [r for r in ok if not has(r)]
        if lacking:
            out.append(f"- {name} {NOT_RECORDED} in {len(lacking)} of {len(ok)} ok runs.")
    if not any(line.startswith("- **") or f" {NOT_RECORDED} in " in line for line in out):
        out.append("- Nothing else: every run found or planned has an ok record with every field.")
    return out


# ---------------------------------------------------------------- figures ---------------------------------

PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None}
RC = {"svg.hashsalt": "benchmark-report", "figure.dpi": 100, "savefig.dpi": 120, "font.size": 9,
      "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7, "xtick.labelsize": 8, "ytick.labelsize": 8,
      "pdf.fonttype": 42, "path.simplify": True}


@dataclass
class Figure:
    kind: str
    dataset: str
    caption: str
    png: bytes | None = None
    pdf: bytes | None = None
    skipped: str | None = None  # why it was not drawn

    @property
    def stem(self) -> str:
        return f"{self.kind}.{_slug(self.dataset)}"


@contextlib.contextmanager
def figure_style():
    """Fixed matplotlib settings (defaults + seaborn's whitegrid + RC), whatever the user's matplotlibrc;
    the previous settings are restored afterwards."""
    import matplotlib as mpl
    import seaborn as sns

    with mpl.rc_context():
        mpl.rcdefaults()
        mpl.rcParams.update(sns.axes_style("whitegrid"))
        mpl.rcParams.update(RC)
        yield


def _render(fig) -> tuple[bytes, bytes]:
    """PNG and PDF bytes without dates or version strings; the constrained layout is computed once."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    png, pdf = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", metadata=PNG_METADATA)
    fig.savefig(pdf, format="pdf", metadata=PDF_METADATA)
    return png.getvalue(), pdf.getvalue()


def _palette(methods: Iterable[str]) -> dict[str, Any]:
    import seaborn as sns

    names = sorted(set(methods), key=_method_order)
    colours = sns.color_palette("colorblind", max(len(names), 1))
    return {m: colours[i % len(colours)] for i, m in enumerate(names)}


def _new_figure(width: float, height: float, panels: int = 1):
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def _sample_std(values: Sequence[float], mean: float) -> float:
    """Standard deviation with the N-1 divisor; 0 for one value (drawn as no error bar)."""
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0


def _class_order(name: str) -> tuple:
    return _order(int(name) if name.lstrip("-").isdigit() else name)


def _mean_series(series: list[list[float]]) -> tuple[list[float], list[float]]:
    """Elementwise mean and std (ddof 1, 0 for one series) of equally long lists."""
    means, stds = [], []
    for column in zip(*series):
        mean = math.fsum(column) / len(column)
        means.append(mean)
        stds.append(_sample_std(column, mean))
    return means, stds


def _legend(s: Setting) -> str:
    return s.method + ("" if s.label == "—" else f" ({s.label})")


def _latent_dim(settings: Sequence[Setting]) -> str:
    dims = {s.values.get("model.latent_dim") for s in settings}
    return f"d = {_value_text(dims.pop())}" if len(dims) == 1 else "d varies"


def figure_au_vs_beta(dataset: str, settings: Sequence[Setting], colours: dict[str, Any]) -> Figure:
    swept = [s for s in settings if s.values.get("hp.beta") is not None and s.values_of("au")]
    base = [s for s in settings if s.method == BASELINE and s.values_of("au")]
    without = sorted({s.method for s in settings if s.method != BASELINE and s.values.get("hp.beta") is None},
                     key=_method_order)
    caption = (f"AU (fraction of latent dims, {_latent_dim(settings)}) against beta per method on {dataset}: "
               "mean ± std over seeds; `vae` is beta = 1"
               + (f"; no beta: {', '.join(without)}" if without else "") + ".")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig_ = Figure("au_vs_beta", dataset, caption)
    if not swept:
        fig_.skipped = "no method with a `beta` hyperparameter has ok runs"
        return fig_
    fig, (ax,) = _new_figure(5.5, 3.4)
    groups: dict[tuple[str, str], list[Setting]] = {}
    for s in swept:
        rest = ", ".join(text for column, text in s.parts if column != "hp.beta")
        groups.setdefault((s.method, rest), []).append(s)
    markers = itertools.cycle("osD^vP*X")
    for (method, rest), members in sorted(groups.items(), key=lambda kv: (_method_order(kv[0][0]), kv[0][1])):
        members = sorted(members, key=lambda s: s.values["hp.beta"])
        xs = [s.values["hp.beta"] for s in members]
        stats = [s.mean_std("au") for s in members]
        ax.errorbar(xs, [m for m, _, _ in stats], yerr=[sd or 0.0 for _, sd, _ in stats], marker=next(markers),
                    ms=4, capsize=2, lw=1.2, color=colours[method], label=method + (f" ({rest})" if rest else ""))
    for s in base:
        mean, std, _ = s.mean_std("au")
        ax.errorbar([1.0], [mean], yerr=[std or 0.0], marker="s", ms=5, capsize=2, color=colours[BASELINE],
                    ls="none", label=BASELINE + (f" ({s.label})" if s.label != "—" else ""))
    betas = [s.values["hp.beta"] for s in swept] + ([1.0] if base else [])
    if min(betas) > 0 and max(betas) / min(betas) >= 5:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("beta")
    ax.set_ylabel("AU (fraction)")
    ax.set_title(dataset)
    ax.legend(loc="best", frameon=True)
    fig_.png, fig_.pdf = _render(fig)
    return fig_


def figure_tradeoff(dataset: str, settings: Sequence[Setting], colours: dict[str, Any]) -> Figure:
    usable = [s for s in settings if s.values_of("kl") and s.values_of("rec") and s.values_of("au")]
    fig_ = Figure("tradeoff", dataset, f"Trade-offs on {dataset}, one point per setting (mean ± std over seeds): "
                  "rate-distortion (KL vs rec, lower-left is better) and AU vs KL.")
    if not usable:
        fig_.skipped = "no ok runs with KL, rec and AU"
        return fig_
    fig, (ax1, ax2) = _new_figure(9.0, 3.6, 2)
    seen: set[str] = set()
    for s in usable:
        kl, kl_sd, _ = s.mean_std("kl")
        rec, rec_sd, _ = s.mean_std("rec")
        au, au_sd, _ = s.mean_std("au")
        label = s.method if s.method not in seen else None
        seen.add(s.method)
        ax1.errorbar([kl], [rec], xerr=[kl_sd or 0.0], yerr=[rec_sd or 0.0], marker="o", ms=4, capsize=2,
                     color=colours[s.method], ls="none", label=label)
        ax2.errorbar([kl], [au], xerr=[kl_sd or 0.0], yerr=[au_sd or 0.0], marker="o", ms=4, capsize=2,
                     color=colours[s.method], ls="none")
        if s.label != "—":
            for ax, y in ((ax1, rec), (ax2, au)):
                ax.annotate(s.label, (kl, y), textcoords="offset points", xytext=(3, 3), fontsize=5,
                            color=colours[s.method])
    ax1.set_xlabel("KL (nats, rate)")
    ax1.set_ylabel("rec (distortion)")
    ax1.set_title("rate-distortion")
    ax2.set_xlabel("KL (nats)")
    ax2.set_ylabel("AU (fraction)")
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_title("AU vs KL")
    ax1.legend(loc="best", frameon=True)
    fig_.png, fig_.pdf = _render(fig)
    return fig_


def _curve(run: Run, key: str) -> dict[int, float]:
    points = {}
    for point in run.record.get("curves") or []:
        value = point.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            points[int(point["epoch"])] = float(value)
    return points


def _curve_mi_cap(run: Run) -> float | None:
    """Cap log M (nats) of the test-split MI of a run's training curves: the recorded
    ``estimators.mi_cap`` when the final MI used the whole test split too, else log M from the test
    split's size (M = min(mi_batch_size, size) for the batch mixture); None without a recorded cap."""
    estimators = run.record.get("estimators") or {}
    cap, size = estimators.get("mi_cap"), estimators.get("examples")
    if not _finite(cap):
        return None
    if estimators.get("mi_split", "test") == "test" and estimators.get("mi_examples", size) == size:
        return float(cap)
    if not _finite(size) or size < 1:
        return None
    if estimators.get("mi_estimator") == "aggregate-batch":
        size = min(int((run.record["config"].get("eval") or {}).get("mi_batch_size", 50)), size)
    return math.log(size)


def _draw_mi_caps(ax, caps: Iterable[float]) -> None:
    """The MI caps (nats) as labelled dashed horizontal lines."""
    for cap in sorted({round(c, 6) for c in caps}):
        ax.axhline(cap, color="0.3", ls="--", lw=1)
        ax.text(0.99, cap, f"cap log {round(math.exp(cap))} = {cap:.2f}", transform=ax.get_yaxis_transform(),
                ha="right", va="bottom", fontsize=6, color="0.3")


def figure_curves(dataset: str, chosen: Sequence[Setting], colours: dict[str, Any]) -> Figure:
    from matplotlib.ticker import MaxNLocator

    panels = [("test_kl", "test KL (nats)"), ("test_au", "test AU (fraction)")]
    if any(_curve(r, "test_mi") for s in chosen for r in s.ok):
        panels.append(("test_mi", "test MI (nats)"))
    fig_ = Figure("curves", dataset, f"Training curves on {dataset} of each method's headline setting: "
                  "test-split " + ", ".join(p[0][5:].upper() for p in panels) + " per epoch, mean ± std over seeds"
                  + ("; dashed: the MI cap log N (N = mixture size)" if len(panels) > 2 else "") + ".")
    if not any(_curve(r, key) for s in chosen for r in s.ok for key, _ in panels):
        fig_.skipped = "no curves with test KL / AU recorded"
        return fig_
    fig, axes = _new_figure(3.3 * len(panels), 3.2, len(panels))
    for ax, (key, title) in zip(axes, panels):
        for s in chosen:
            curves = [c for c in (_curve(r, key) for r in s.ok) if c]
            epochs = sorted(set().union(*curves)) if curves else []
            if not epochs:
                continue
            means, stds = [], []
            for e in epochs:
                vals = [c[e] for c in curves if e in c]
                m = math.fsum(vals) / len(vals)
                means.append(m)
                stds.append(_sample_std(vals, m))
            ax.plot(epochs, means, marker="o", ms=2.5, lw=1.2, color=colours[s.method], label=_legend(s))
            ax.fill_between(epochs, [m - d for m, d in zip(means, stds)], [m + d for m, d in zip(means, stds)],
                            color=colours[s.method], alpha=0.2, lw=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        if key == "test_au":
            ax.set_ylim(-0.03, 1.03)
        if key == "test_mi":
            _draw_mi_caps(ax, [c for c in (_curve_mi_cap(r) for s in chosen for r in s.ok if _curve(r, key))
                               if c is not None])
    axes[0].legend(loc="best", frameon=True)
    fig_.png, fig_.pdf = _render(fig)
    return fig_


def figure_per_class(dataset: str, chosen: Sequence[Setting]) -> Figure:
    import seaborn as sns

    fig_ = Figure("per_class_au", dataset, f"Per-class AU on {dataset}: fraction of latent dims active within "
                  "each class's test examples, headline setting per method, mean over seeds.")
    rows: dict[str, dict[str, float]] = {}
    for s in chosen:
        per_seed = [(r.record.get("per_class") or {}).get("au") or {} for r in s.ok]
        per_seed = [p for p in per_seed if p]
        if not per_seed:
            continue
        classes = sorted({c for p in per_seed for c in p}, key=_class_order)
        rows[s.method] = {c: math.fsum(p[c] for p in per_seed if c in p) / sum(1 for p in per_seed if c in p)
                          for c in classes}
    if not rows:
        fig_.skipped = f"per-class AU {NOT_RECORDED}"
        return fig_
    classes = sorted({c for r in rows.values() for c in r}, key=_class_order)
    frame = pd.DataFrame([[rows[m].get(c, float("nan")) for c in classes] for m in rows], index=list(rows),
                         columns=classes)
    fig, (ax,) = _new_figure(0.55 * len(classes) + 2.5, 0.4 * len(rows) + 1.4)
    sns.heatmap(frame, ax=ax, vmin=0.0, vmax=1.0, cmap="viridis", annot=True, fmt=".2f", annot_kws={"fontsize": 6},
                cbar_kws={"label": "AU (fraction)"}, linewidths=0.5)
    ax.set_xlabel("class")
    ax.set_ylabel("method")
    ax.set_title(dataset)
    fig_.png, fig_.pdf = _render(fig)
    return fig_


def figure_spectra(dataset: str, chosen: Sequence[Setting], colours: dict[str, Any]) -> Figure:
    thresholds = sorted({(r.record.get("estimators") or {}).get("au_threshold") or r.setting.get("eval.au_threshold")
                         for s in chosen for r in s.ok} - {None})
    fig_ = Figure("spectra", dataset, f"Per-dimension variance spectra on {dataset}: variance over the test set "
                  "of each latent dim's posterior mean, sorted, headline setting per method, mean over seeds; "
                  "dashed: the AU threshold" + (f" {thresholds[0]:g}" if len(thresholds) == 1 else "") + ".")
    lines = []
    for s in chosen:
        spectra = [sorted((float(v) for v in (r.record.get("vectors") or {}).get("au_variances") or []), reverse=True)
                   for r in s.ok]
        spectra = [x for x in spectra if x]
        if spectra and len({len(x) for x in spectra}) == 1:
            lines.append((s, _mean_series(spectra)[0]))
    if not lines:
        fig_.skipped = f"per-dimension variances {NOT_RECORDED}"
        return fig_
    fig, (ax,) = _new_figure(5.5, 3.4)
    floor = 1e-8
    for s, mean in lines:
        ax.plot(range(1, len(mean) + 1), [max(v, floor) for v in mean], marker="o", ms=2.5, lw=1.2,
                color=colours[s.method], label=_legend(s))
    for t in thresholds:
        ax.axhline(t, color="0.3", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("latent dimension (sorted by variance)")
    ax.set_ylabel("Var[E q(z|x)] (log)")
    ax.set_title(dataset)
    ax.legend(loc="best", frameon=True)
    fig_.png, fig_.pdf = _render(fig)
    return fig_


def figure_noise(dataset: str, chosen: Sequence[Setting], colours: dict[str, Any]) -> Figure:
    fig_ = Figure("noise", dataset, f"Noise sensitivity on {dataset}: L2 distance of the decoded mean from the "
                  "noiseless decoding, and diversity between noise draws, against the noise variance s^2 added "
                  "to the posterior means; headline setting per method, mean ± std over seeds.")
    found = []
    for s in chosen:
        noises = [r.record.get("noise") or {} for r in s.ok]
        noises = [n for n in noises if n.get("variances") and n.get("distance") and n.get("diversity")]
        if noises and len({json.dumps(n["variances"]) for n in noises}) == 1:
            found.append((s, noises))
    if not found:
        fig_.skipped = f"noise sensitivity {NOT_RECORDED}"
        return fig_
    fig, axes = _new_figure(8.0, 3.2, 2)
    for ax, key in zip(axes, ("distance", "diversity")):
        for s, noises in found:
            xs = [float(v) for v in noises[0]["variances"]]
            means, stds = _mean_series([[float(v) for v in n[key]] for n in noises])
            ax.errorbar(xs, means, yerr=stds, marker="o", ms=3, capsize=2, lw=1.2, color=colours[s.method],
                        label=_legend(s))
        ax.set_xlabel("noise variance $s^2$")
        ax.set_title(key)
    axes[0].set_ylabel("L2 in data space")
    axes[0].legend(loc="best", frameon=True)
    fig_.png, fig_.pdf = _render(fig)
    return fig_


# ---------------------------------------------------------------- writing ---------------------------------


class Writer:
    """Collects the files of one report and writes them, removing stale files listed in an old MANIFEST."""

    def __init__(self, out: Path):
        self.out = out
        self.files: dict[str, bytes] = {}

    def add(self, rel: str, content: str | bytes) -> str:
        self.files[rel] = content.encode() if isinstance(content, str) else content
        return rel

    def write(self, manifests: dict[str, list[str]]) -> None:
        for rel, content in sorted(self.files.items()):
            path = self.out / rel
            if path.is_file() and path.read_bytes() == content:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        for folder, listed in manifests.items():
            for rel in listed:
                if rel in self.files or ".." in Path(rel).parts or Path(rel).is_absolute():
                    continue
                path = self.out / rel
                path.unlink(missing_ok=True)
                for parent in path.parents:  # drop folders this left empty, up to <out>/<grid>
                    if parent == self.out / folder or not parent.is_dir() or any(parent.iterdir()):
                        break
                    parent.rmdir()
            top = self.out / folder
            if top.is_dir() and not any(top.iterdir()):
                top.rmdir()


def _old_manifest(out: Path, folder: str) -> list[str]:
    path = out / folder / "MANIFEST"
    try:
        return [f"{folder}/{line}" for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def _md_table_links(folder: str, stem: str) -> str:
    return " · ".join(f"[{kind}]({folder}/tables/{stem}.{ext})" for kind, ext in
                      (("Markdown", "md"), ("LaTeX", "tex"), ("CSV", "csv")))


def _provenance(data: GridData) -> list[str]:
    statuses: dict[str, int] = {}
    for r in data.runs:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    counts = ", ".join(f"{v} {k}" for k, v in sorted(statuses.items(), key=lambda kv: (kv[0] != "ok", kv[0])))
    commits = sorted({(((r.record.get("environment") or {}).get("git") or {}).get("commit") or "unknown")[:12]
                      + (" (dirty)" if (((r.record.get("environment") or {}).get("git") or {}).get("dirty")) else "")
                      for r in data.runs})
    devices = sorted({str(r.record.get("device")) for r in data.runs if r.record.get("device")})
    seeds = sorted({r.seed for r in data.runs}, key=_order)
    methods = sorted({r.setting["method"] for r in data.runs}, key=_method_order)
    unreadable = f", {len(data.unreadable)} unreadable" if data.unreadable else ""
    return [f"- records: {len(data.runs)} ({counts}){unreadable}",
            f"- data sets: {', '.join(data.datasets()) or '—'}; methods: {', '.join(methods) or '—'}; "
            f"seeds: {', '.join(map(str, seeds)) or '—'}",
            f"- code: {', '.join(f'`{c}`' for c in commits) or 'unknown'}; devices: {', '.join(devices) or 'unknown'}"]


def _copy_artifacts(data: GridData, chosen: Sequence[Setting], writer: Writer,
                    folder: str) -> dict[str, dict[str, str]]:
    """Stored images of the first ok seed (with images) of each headline setting:
    ``{name: {setting key: report-relative path}}``."""
    found: dict[str, dict[str, str]] = {}
    for s in chosen:
        for run in s.ok:
            artifacts = run.record.get("artifacts") or {}
            copied = False
            for name, filename in sorted(artifacts.items()):
                if not isinstance(filename, str) or Path(filename).name != filename or not filename.endswith(".png"):
                    continue
                source = data.runs_dir / filename
                if not source.is_file():
                    continue
                rel = writer.add(f"{folder}/images/{_slug(filename)}", source.read_bytes())
                found.setdefault(str(name), {})[s.key] = rel
                copied = True
            if copied:
                break
    return found


ARTIFACT_CAPTIONS = {"reconstructions": "Reconstructions: test images (top rows) over their decoded posterior means "
                                        "(bottom rows)",
                     "samples": "Prior samples: decoded means of z ~ N(0, I)",
                     "noise": "Noise grid: decoded means of posterior means plus growing noise (variance s^2)"}


def report_grid(data: GridData, writer: Writer, figure_no: list[int]) -> list[str]:
    """Write one grid's tables / figures / images; return its README section."""
    folder = _slug(data.name)
    lines = [f"## Grid `{data.name}`", ""]
    description = _grid_description(data.name)
    if description:
        lines += [f"*{description}*", ""]
    lines += _provenance(data) + [""]
    chosen = headlines(data)
    comparisons = compare_with_vae(data)
    colours = _palette(s.method for s in data.settings)

    # headline
    lines += ["### Headline: best setting per method", ""]
    if chosen:
        p_au = {c.setting.key: c.results.get("au") for c in comparisons}
        extra = {"p (AU vs vae)": [("baseline" if s.method == BASELINE else
                                    (_stat_cells(p_au.get(s.key), 3)[1] if p_au.get(s.key) else "no baseline"))
                                   for s in chosen]}
        headline = settings_table(chosen, with_dataset=True, extra=extra)
        writer.add(f"{folder}/tables/headline.md", headline.markdown(notes=True))
        writer.add(f"{folder}/tables/headline.tex", headline.latex(
            f"Best setting per method (grid {data.name}): mean ± std over seeds; bold: best per column.",
            f"tab:{folder}-headline"))
        writer.add(f"{folder}/tables/headline.csv", settings_csv(chosen))
        lines += [headline.markdown(),
                  "Best setting of a method = highest mean AU; ties broken by the lower mean IW-NLL "
                  "(−ELBO where IW-NLL is not recorded). Chosen on the evaluation (test) split itself, so "
                  "slightly optimistic. **Bold**: best per column — higher AU and MI (MI only below its cap), "
                  "lower IW-NLL, rec and time; KL is not marked (a higher rate is neither better nor worse on "
                  "its own); rec and IW-NLL only between rows with the same likelihood. "
                  "p: Welch's t-test of AU against `vae` on the same data set and architecture.",
                  *[f"{note}." for note in headline.notes], "",
                  "Tables: " + _md_table_links(folder, "headline"), ""]
    else:
        lines += ["No ok runs yet, so there is no headline table.", ""]

    # against vae
    lines += [f"### Against the plain VAE (`{BASELINE}`)", ""]
    if comparisons:
        table = comparison_table(comparisons, ["au", "nll"])
        full = comparison_table(comparisons, COMPARED)
        writer.add(f"{folder}/tables/vs_vae.md", full.markdown())
        writer.add(f"{folder}/tables/vs_vae.tex", full.latex(
            f"Against {BASELINE} (grid {data.name}): difference of means, Welch's t-test p (raw and Holm-adjusted "
            "per data set and metric) and Cohen's d.", f"tab:{folder}-vs-vae"))
        writer.add(f"{folder}/tables/vs_vae.csv", comparison_csv(comparisons))
        lines += [table.markdown(),
                  f"Δ: method mean − `{BASELINE}` mean; p: Welch's t-test (scipy `ttest_ind`, `equal_var=False`), "
                  "two-sided; Holm: adjusted over the settings of a data set for that metric; d: Cohen's d with "
                  f"the pooled standard deviation. \"{N_TOO_SMALL}\": fewer than 2 ok seeds on a side. With few "
                  "seeds, read p and d as rough indications only. KL, MI and rec: "
                  + _md_table_links(folder, "vs_vae") + ".", ""]
    else:
        lines += [f"Nothing to compare: no ok runs of methods other than `{BASELINE}`.", ""]

    # figures
    lines += ["### Figures", ""]
    figures: list[Figure] = []
    for dataset in data.datasets():
        settings = data.settings_of(dataset)
        mine = [s for s in chosen if s.dataset == dataset]
        with figure_style():
            figures += [figure_au_vs_beta(dataset, settings, colours), figure_tradeoff(dataset, settings, colours),
                        figure_curves(dataset, mine, colours), figure_per_class(dataset, mine),
                        figure_spectra(dataset, mine, colours), figure_noise(dataset, mine, colours)]
    skipped = []
    for f in figures:
        if f.png is None:
            skipped.append(f"- {f.kind} ({f.dataset}): {f.skipped}.")
            continue
        png = writer.add(f"{folder}/figures/{f.stem}.png", f.png)
        pdf = writer.add(f"{folder}/figures/{f.stem}.pdf", f.pdf or b"")
        figure_no[0] += 1
        lines += [f"![{f.kind} {f.dataset}]({png})", "",
                  f"*Figure {figure_no[0]}. {f.caption}* ([PDF]({pdf}))", ""]
    artifacts = _copy_artifacts(data, chosen, writer, folder)
    for name in sorted(artifacts, key=lambda n: (list(ARTIFACT_CAPTIONS).index(n) if n in ARTIFACT_CAPTIONS else 9, n)):
        for dataset in data.datasets():
            cells = [(s, artifacts[name][s.key]) for s in chosen if s.dataset == dataset and s.key in artifacts[name]]
            if not cells:
                continue
            lines += ["| " + " | ".join(_md_escape(s.method) for s, _ in cells) + " |",
                      "|" + "---|" * len(cells),
                      "| " + " | ".join(f"![{_md_escape(s.method)}]({rel})" for s, rel in cells) + " |", ""]
            figure_no[0] += 1
            caption = ARTIFACT_CAPTIONS.get(name, f"Stored image `{name}`")
            lines += [f"*Figure {figure_no[0]}. {caption} on {dataset}, headline setting per method, first ok seed "
                      "(images stored with the runs).*", ""]
    if not any(f.png for f in figures) and not artifacts:
        lines += ["No figures: no ok runs yet.", ""]
    if skipped:
        lines += ["Not drawn:", "", *skipped, ""]

    # full tables
    lines += ["### Full tables", ""]
    for dataset in data.datasets():
        settings = data.settings_of(dataset)
        table = settings_table(settings)
        stem = _slug(dataset)
        writer.add(f"{folder}/tables/{stem}.md", table.markdown(notes=True))
        writer.add(f"{folder}/tables/{stem}.tex", table.latex(
            f"{dataset} (grid {data.name}): every method and setting, mean ± std over seeds (n); "
            "bold: best per column.", f"tab:{folder}-{stem}"))
        writer.add(f"{folder}/tables/{stem}.csv", settings_csv(settings))
        lines += [f"{dataset}, {len(settings)} settings: {_md_table_links(folder, stem)}", "",
                  f"<details><summary>{dataset}: every setting</summary>", "", table.markdown(),
                  *[f"{note}." for note in table.notes], "", "</details>", ""]

    lines += ["### What is missing", "", *missing_section(data), ""]
    return lines


def _grid_description(name: str) -> str:
    return str((grid_file(name) or {}).get("description", ""))


NO_RESULTS = """# Benchmark report

No run records found under `{results}/`{which}, so there is nothing to report yet.

Produce results, then rebuild this report:

```bash
.venv/bin/python -m benchmark run --grid quick        # trains; records go to results/quick/runs/
.venv/bin/python -m benchmark report                  # rebuilds reports/ from results/
```
"""


def build_report(results: Path, out: Path, grid: str | None = None) -> tuple[int, str]:
    """Write the report; returns (exit code, message for stderr)."""
    grid_dirs = find_grids(results, grid)
    if grid is not None and not grid_dirs:
        available = [p.name for p in find_grids(results, None)]
        if available:
            return 2, (f"error: no records for grid {grid!r} under {results}/ "
                       f"(grids with records: {', '.join(available)})")
    writer = Writer(out)
    manifests: dict[str, list[str]] = {}
    if grid is None and out.is_dir():  # grids that no longer have records: their old files go
        for old in sorted(p.name for p in out.iterdir() if (p / "MANIFEST").is_file()):
            manifests[old] = _old_manifest(out, old)
    if not grid_dirs:
        writer.add("README.md", NO_RESULTS.format(results=str(results).rstrip("/"),
                                                  which=f" for grid `{grid}`" if grid else ""))
        writer.write(manifests)
        hint = (f" ({results}/runs exists: pass the folder above a grid, e.g. --results {results.parent})"
                if (results / "runs").is_dir() else "")
        return 0, (f"no run records under {results}/{hint} — run `python -m benchmark run` first; "
                   f"wrote {out / 'README.md'} saying so")
    lines = ["# Benchmark report", "",
             f"Generated by `python -m benchmark report` from the run records in `{str(results).rstrip('/')}/` "
             "(nothing retrained); do not edit by hand — rerun the command. Metrics: mean ± standard deviation "
             "over seeds of the ok runs, n = number of ok seeds. Column meanings:", ""]
    lines += [f"- **{c.header}**: {c.meaning}." for c in COLUMNS] + [""]
    figure_no = [0]
    summaries = []
    for grid_dir in grid_dirs:
        data = load_grid_records(grid_dir)
        folder = _slug(data.name)
        before = set(writer.files)
        lines += report_grid(data, writer, figure_no)
        mine = sorted(rel for rel in writer.files if rel not in before)
        writer.add(f"{folder}/MANIFEST", "".join(rel[len(folder) + 1:] + "\n" for rel in mine + [f"{folder}/MANIFEST"]))
        manifests[folder] = _old_manifest(out, folder)
        summaries.append(f"{data.name}: {len(data.runs)} records")
    writer.add("README.md", "\n".join(lines).rstrip("\n") + "\n")
    writer.write(manifests)
    return 0, f"report of {'; '.join(summaries)} -> {out}/README.md ({len(writer.files)} files)"


# ---------------------------------------------------------------- command line ----------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    parser.add_argument("--out", default="reports", metavar="DIR", help="report folder (default: reports)")
    parser.add_argument("--grid", metavar="NAME", help="only this grid (default: every grid with records)")


def main(args: argparse.Namespace) -> int:
    """Exit 0 when the report was written (also with no records at all: the README then says how to
    produce them); 2 when --grid names a grid without records while other grids have some."""
    code, message = build_report(Path(args.results), Path(args.out), args.grid)
    print(message, file=sys.stderr)
    return code


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m benchmark.report", description=__doc__.split("\n\n")[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
