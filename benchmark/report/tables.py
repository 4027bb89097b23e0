"""The report's tables: every setting of a data set, the headline (best setting per method) and
the comparison with the plain VAE, as Markdown / LaTeX (:class:`~benchmark.report.format.Table`)
and CSV; best values marked per column."""

from __future__ import annotations

import json
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..config import MI_CAP_MARGIN
from .format import Table, fixed, to_csv
from .load import NOT_RECORDED, GridData, Setting, method_order
from .stats import COMPARED, Comparison

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


def cell_text(setting: Setting, key: str) -> tuple[str, float | None]:
    """``mean ± std`` at the column's decimals (``mean`` alone for one seed; `` (at cap)`` after an
    MI at its cap); the rounded mean."""
    column = COLUMN[key]
    mean, std, n = setting.mean_std(key)
    if n == 0:
        return (NOT_RECORDED if setting.ok else "—"), None
    text = fixed(mean, column.decimals) + ("" if std is None else f" ± {fixed(std, column.decimals)}")
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
    metric_keys = sorted({k for s in settings for r in s.ok for k, v in (r.record.metrics or {}).items()
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
    return to_csv(pd.DataFrame(rows))


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
        for method in sorted({s.method for s in data.settings_of(dataset)}, key=method_order):
            best = headline_choice([s for s in data.settings_of(dataset) if s.method == method])
            if best is not None:
                chosen.append(best)
    return chosen


def _p_text(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def stat_cells(result: dict[str, Any] | None, decimals: int) -> list[str]:
    """Δ mean, p (Welch), p (Holm), Cohen's d."""
    if result is None:
        return ["—", "—", "—", "—"]
    diff = "—" if result["diff"] is None else ("+" if result["diff"] > 0 else "") + fixed(result["diff"], decimals)
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
            row += stat_cells(c.results.get(key), COLUMN[key].decimals)
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
                         "baseline": c.baseline.legend if c.baseline else None, "metric": key,
                         "n": r.get("n", len(c.setting.ok)), "n_vae": r.get("n_base"),
                         "mean": r.get("mean"), "mean_vae": r.get("mean_base"), "diff": r.get("diff"),
                         "test": "welch_t" if r.get("p") is not None else None, "t": r.get("t"), "p": r.get("p"),
                         "p_holm": r.get("p_holm"), "cohens_d": r.get("d"),
                         "note": "; ".join(x for x in (c.note, r.get("note", "")) if x)})
    frame = pd.DataFrame(rows, columns=["dataset", "method", "setting", "baseline", "metric", "n", "n_vae", "mean",
                                        "mean_vae", "diff", "test", "t", "p", "p_holm", "cohens_d", "note"])
    return frame.to_csv(index=False, float_format="%.10g", lineterminator="\n")
