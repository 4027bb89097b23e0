"""The report's tables: every setting of a data set, the headline settings and the comparison with
the plain VAE, as Markdown / LaTeX (:class:`~benchmark.report.format.Table`) and CSV; the best value
of a column marked only among comparable rows (:func:`best_rows`, the rule stated beside each table
by :func:`bold_note`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..config import MI_CAP_MARGIN
from .exact import permutation_test, sample_mean_std
from .format import GROUP_NOTE, Table, display_name, fixed, hp_symbol, symbol_text, to_csv
from .load import BASELINE, LANGUAGE_MODEL, NOT_RECORDED, GridData, Setting
from .stats import ALPHA, PRIMARY, Comparison, Family, compared

AT_CAP = " (at cap)"
LATENT_METRICS = ("au", "au_count", "kl", "mi")  # the language model has no z: its cells read "—"


def no_latent(setting: Setting, key: str) -> bool:
    """Whether ``key`` is a latent metric of a setting without z (the language model)."""
    return key in LATENT_METRICS and setting.method == LANGUAGE_MODEL
INVALID = "invalid"
INVALID_NOTE = ("invalid: a value its estimator's own check rejects (docs/metrics.md); left out of means, tests "
                "and rankings")


@dataclass(frozen=True)
class Column:
    """A reported metric: record key, header, which direction is "best" (None: no best), decimals."""

    key: str
    header: str
    best: str | None
    decimals: int
    meaning: str

    @property
    def name(self) -> str:
        """The header without its direction marker."""
        return self.header.rstrip(" ↑↓")


COLUMNS = [
    Column("au", "AU ↑", "max", 3, "active units: latent dims whose posterior mean varies over the data, shown as "
                                   "a count of the d dims (\"20.2/32\": the mean over seeds; a fraction where the "
                                   "records hold no count) (higher is better: the remedies' goal)"),
    Column("kl", "KL", None, 2, "mean KL(q(z|x) || p(z)) in nats: the rate; no best is marked "
                                "(more is not better or worse on its own)"),
    Column("mi", "MI ↑", "max", 2, "I_q(x; z) in nats (higher is better up to its cap log N, N = the size of "
                                   "the aggregate-posterior mixture; \"(at cap)\": within the margin of the cap, "
                                   "where every code identifies its example, never marked best)"),
    Column("nll", "IW-NLL ↓", "min", 2, "importance-weighted negative log-likelihood in nats, K importance "
                                        "samples per example on a subset of the test examples (both named under "
                                        "each table; lower is better)"),
    Column("neg_elbo", "−ELBO ↓", "min", 2, "negative evidence lower bound in nats (β = 1, one posterior sample; "
                                           "an upper bound on the NLL, lower is better)"),
    Column("rec", "rec ↓", "min", 2, "reconstruction loss in the likelihood's units, per image (for the Gaussian "
                                     "likelihood the sum of squared errors over pixels; lower is better)"),
    Column("wall_time_s", "time (s)", None, 1, "wall time per run in seconds (never marked best: differences "
                                               "between runs are mostly the machine's noise; comparable on one "
                                               "device only)"),
]
PPL = Column("ppl", "PPL ↓", "min", 2, "perplexity of the IW-NLL on sentences: exp(total IW-NLL / predicted tokens, "
                                     "</s> included) (lower is better)")
AU_COUNT = Column("au_count", "AU count", None, 0, "active units, number of latent dims")
UNITS = {"kl": "nats", "mi": "nats", "nll": "nats", "neg_elbo": "nats"}  # LaTeX headers' second line
COLUMN = {c.key: c for c in [*COLUMNS, PPL, AU_COUNT]}
# the metric legend of text data sets (IW-NLL and its perplexity)
TEXT_LEGEND = ("IW-NLL: nats per sentence (K importance samples, see estimators); PPL = exp(total IW-NLL / "
               "predicted tokens, </s> included)")
TEXT_COLUMN = {c.key: c for c in [
    Column("nll", "NLL ↓", "min", 2, TEXT_LEGEND.split("; ")[0] + " (lower is better)"), PPL,
    Column("rec", "rec ↓", "min", 2, "−log p(x|z) in nats per sentence, one posterior sample (lower is better)")]}


def with_ppl(columns: Sequence[Column]) -> list[Column]:
    """``columns`` with PPL after IW-NLL."""
    return [c for column in columns for c in ((column, PPL) if column.key == "nll" else (column,))]


TEXT_COLUMNS = [TEXT_COLUMN.get(c.key, c) for c in with_ppl(COLUMNS)]


def column_of(key: str, text: bool) -> Column:
    """The column of metric ``key`` as a table of text (``text``) or image settings shows it."""
    return TEXT_COLUMN[key] if text and key in TEXT_COLUMN else COLUMN[key]


def all_text(settings: Sequence[Setting]) -> bool:
    """Every setting of ``settings`` with ok runs is on sentences (and one is)."""
    return {s.text for s in settings if s.ok} == {True}


def columns_of(settings: Sequence[Setting]) -> list[Column]:
    """The columns of a table of ``settings``: :data:`COLUMNS`, or :data:`TEXT_COLUMNS` when every
    setting with ok runs is on sentences, or both kinds' (PPL after IW-NLL) when they mix."""
    if all_text(settings):
        return TEXT_COLUMNS
    return with_ppl(COLUMNS) if any(s.text for s in settings) else COLUMNS


def per_seed_keys(settings: Sequence[Setting]) -> list[str]:
    """The per-seed columns of a settings table: AU count and KL where every setting is on sentences
    (the collapse signature at a glance), else the AU count (AU where a record holds no count)."""
    if all_text(settings):
        return ["au_count", "kl"]
    return ["au_count"] if all(au_counts(s) is not None for s in settings if s.ok) else ["au"]


def _estimator_values(runs: Sequence[Any], key: str) -> list[Any]:
    return sorted({json.dumps((r.record.estimators or {}).get(key), sort_keys=True) for r in runs})


def text_notes(settings: Sequence[Setting]) -> list[str]:
    """[:data:`TEXT_LEGEND` with the recorded K and sentences] when ``settings`` include text ones."""
    if not any(s.text for s in settings):
        return []
    runs = [r for s in settings if s.text for r in s.ok if r.recorded("nll")]
    used = sorted({(int((r.record.estimators or {}).get("nll_samples") or 0),
                    int((r.record.estimators or {}).get("nll_examples") or 0)) for r in runs})
    here = " or ".join(f"K = {k} on {n} test sentences" for k, n in used)
    return [TEXT_LEGEND + (f"; here {here}" if here else "")]


def image_notes(settings: Sequence[Setting], columns: Sequence[Column]) -> list[str]:
    """The units of an image table's columns and how its IW-NLL and −ELBO were estimated (K importance
    samples per example and the test examples they were computed on, as recorded); [] without image settings."""
    images = [s for s in settings if s.ok and not s.text]
    keys = [c.key for c in columns]
    if not images or not {"kl", "mi", "nll", "neg_elbo"} & set(keys):
        return []
    runs = [r for s in images for r in s.ok if r.recorded("nll")]
    used = sorted({(int((r.record.estimators or {}).get("nll_samples") or 0),
                    int((r.record.estimators or {}).get("nll_examples") or 0)) for r in runs})
    here = " or ".join(f"K = {k}" + (f" on {n} test examples" if n else "") for k, n in used if k)
    named = [c.name for c in columns if c.key in ("kl", "mi", "nll", "neg_elbo")]
    text = f"{', '.join(named)}: nats per image"
    if "nll" in keys:
        text += f"; IW-NLL: K importance samples per example{f' (here {here})' if here else ''}"
    elbo = [json.loads(v) for v in _estimator_values([r for s in images for r in s.ok if r.recorded("neg_elbo")],
                                                    "neg_elbo")]
    if "neg_elbo" in keys and len(elbo) == 1 and isinstance(elbo[0], str):
        text += f"; −ELBO: {elbo[0]}"
    return [text]


def au_counts(setting: Setting) -> list[int] | None:
    """The AU counts of the ok runs whose AU is valid (seed order), when every one of them records
    its count and the setting its latent dims (``model.latent_dim``); else None."""
    if setting.config.latent_dim <= 0:
        return None
    counts = []
    for run in setting.ok:
        if run.metric("au") is None:
            continue
        count = run.metric("au_count")
        if count is None:
            return None
        counts.append(int(round(count)))
    return counts


def au_count_text(setting: Setting, spread: bool) -> tuple[str, float] | None:
    """An AU mean as a count of the latent dims: ``32/32`` when every seed has the same count, else
    the mean at one decimal (``20.2/32 ± 0.4``); None where the records hold no count."""
    counts = au_counts(setting)
    if not counts:
        return None
    d = setting.config.latent_dim
    mean, std = sample_mean_std([float(c) for c in counts])
    if len(set(counts)) == 1:
        return f"{counts[0]}/{d}", float(counts[0])
    text = f"{fixed(mean, 1)}/{d}" + (f" ± {fixed(std, 1)}" if spread and std is not None else "")
    return text, round(mean, 1)


def cell_text(setting: Setting, key: str, spread: bool = True, count: bool = True) -> tuple[str, float | None]:
    """``mean ± std`` of the valid values at the column's decimals (the mean alone for one value or
    without ``spread``; AU as a count of the latent dims where the records hold one, unless not
    ``count``), `` (n=k)`` when not every ok run recorded the metric, `` (i of k invalid)`` when i of
    the k recorded values are invalid (``invalid (k of k)`` when all are), `` (at cap)`` after an MI
    at its cap; the rounded mean as shown (None when there is none)."""
    column = COLUMN[key]
    if no_latent(setting, key):
        return "—", None
    mean, std, n = setting.mean_std(key)
    recorded, invalid = setting.recorded(key), setting.invalid(key)
    if recorded == 0:
        return (NOT_RECORDED if setting.ok else "—"), None
    if n == 0:
        return f"{INVALID} ({invalid} of {recorded})", None
    as_count = au_count_text(setting, spread) if key == "au" and count else None
    if as_count is not None:
        text, value = as_count
    else:
        text = fixed(mean, column.decimals) + (
            "" if std is None or not spread else f" ± {fixed(std, column.decimals)}")
        value = round(mean, column.decimals)
    counts = ([f"n={n}"] if recorded < len(setting.ok) else []) + ([f"{invalid} of {recorded} {INVALID}"] if invalid
                                                                    else [])
    if counts:
        text += f" ({'; '.join(counts)})"
    if key == "mi" and setting.mi_at_cap():
        text += AT_CAP
    return text, value


def invalid_notes(settings: Sequence[Setting], keys: Sequence[str]) -> list[str]:
    """[:data:`INVALID_NOTE`] when any of ``settings`` has an invalid value of a metric in ``keys``."""
    return [INVALID_NOTE] if any(s.invalid(k) for s in settings for k in keys) else []


def guaranteed(setting: Setting, key: str) -> bool:
    """Whether the setting's method inflates metric ``key`` by construction (the plan's
    ``methods.<method>.guarantees``: bn-vae AU; delta-vae and free-bits AU and KL)."""
    keys = {"au_count": "au", "ppl": "nll"}
    return key in setting.guaranteed or keys.get(key, "") in setting.guaranteed


def comparable(settings: Sequence[Setting]) -> dict[str, str]:
    """Setting key -> its group of comparable rows among ``settings``: the same data set, architecture,
    model settings and training budget, i.e. the same value of every setting column but the method's
    hyperparameters that takes two values or more there. A column with one value where it is recorded
    (absent from the others: a field that older records lack, or ``depth`` that only the deep preset
    has) tells no rows apart on its own."""
    telling = telling_columns(settings)
    return {s.key: json.dumps([s.dataset] + [[c, s.values.get(c)] for c in telling[s.dataset]], default=str)
            for s in settings}


def telling_columns(settings: Sequence[Setting]) -> dict[str, list[str]]:
    """Data set -> the setting columns (not hyperparameters) that take two values or more among its
    ``settings``: the columns that tell groups of comparable rows apart (:func:`comparable`)."""
    by_dataset: dict[str, list[Setting]] = {}
    for s in settings:
        by_dataset.setdefault(s.dataset, []).append(s)
    out = {}
    for dataset, members in by_dataset.items():
        columns = sorted({c for s in members for c in s.values if not c.startswith("hp.")} - {"dataset", "method"})
        out[dataset] = [c for c in columns if len({json.dumps(s.values.get(c), default=str) for s in members
                                                   if s.values.get(c) is not None}) > 1]
    return out


def best_rows(settings: Sequence[Setting], key: str) -> set[str]:
    """The key of the setting with the best rounded mean in column ``key`` among ``settings`` (which
    must be comparable rows), or nothing: never a column without a best (KL, time), a value at its
    cap (MI), a metric the method guarantees by construction, an invalid value; never a tie, and
    never where the exact permutation test of its per-seed values against the runner-up's gives
    p > ALPHA (the seeds cannot tell them apart)."""
    column = COLUMN[key]
    if column.best is None:
        return set()
    eligible = []
    for s in settings:
        value = cell_text(s, key)[1]
        if value is None or guaranteed(s, key) or (key == "mi" and s.mi_at_cap()):
            continue
        eligible.append((value if column.best == "min" else -value, s))
    if len(eligible) < 2:
        return set()
    eligible.sort(key=lambda pair: pair[0])
    (first, best), (second, runner_up) = eligible[0], eligible[1]
    if first == second or permutation_test(best.values_of(key), runner_up.values_of(key)).p > ALPHA:
        return set()
    return {best.key}


def _marks(settings: Sequence[Setting], columns: Sequence[Column] | None = None) -> dict[str, set[str]]:
    """Best rows per column (of ``columns``, else :func:`columns_of`), within each group of comparable rows."""
    columns = columns_of(settings) if columns is None else columns
    marks: dict[str, set[str]] = {c.key: set() for c in columns}
    groups: dict[str, list[Setting]] = {}
    key = comparable(settings)
    for s in settings:
        groups.setdefault(key[s.key], []).append(s)
    for members in groups.values():
        for column in columns:
            marks[column.key] |= best_rows(members, column.key)
    return marks


def bold_note(settings: Sequence[Setting], columns: Sequence[Column], grouped: bool = False) -> str:
    """The rule behind the bold cells of a table of ``settings`` (stated once, beside the table)."""
    higher = [c.name for c in columns if c.best == "max"]
    lower = [c.name for c in columns if c.best == "min"]
    never = [c.name for c in columns if c.best is None]
    shown = {c.key for c in columns} | {"au"}
    here = sorted({(display_name(s.method), ", ".join(COLUMN[k].name for k in s.guaranteed if k in shown))
                   for s in settings if any(k in shown for k in s.guaranteed)})
    parts = []
    if higher:
        parts.append(f"higher {', '.join(higher)}")
    if lower:
        parts.append(f"lower {', '.join(lower)}")
    return ("Bold: the best mean of a column (" + "; ".join(parts) + ") among comparable rows only (same data set, "
            "architecture, model settings and training budget" + ("; the rows of one group" if grouped else "")
            + f"), and only where the exact permutation test of its seeds against the runner-up's gives p ≤ "
            f"{ALPHA:g}; never " + "".join(f"{name}, " for name in never) + "an MI at its cap, an invalid value or a "
            "metric that a method guarantees by construction"
            + (" (here " + "; ".join(f"{name}: {keys}" for name, keys in here) + ")" if here else ""))


SHORT = "†"
SHORT_NOTE = "†: fewer ok seeds than the plan holds (failed, diverged or not run yet); n reads \"k of P\""


def label_text(setting: Setting) -> str:
    """The setting's label with symbols (β=0.2, α_T=1), and † when it has fewer ok seeds than planned."""
    return symbol_text(setting.label) + (f" {SHORT}" if setting.short else "")


def hp_text(setting: Setting) -> str:
    """The method's hyperparameters of a setting's label, by symbol (β=0.2, λ=0.25), and † when it
    has fewer ok seeds than planned; "—" without any."""
    text = ", ".join(hp_symbol(text) for c, text in setting.parts if c.startswith("hp.")) or "—"
    return text + (f" {SHORT}" if setting.short else "")


def group_text(setting: Setting) -> str:
    """The model / train / data / eval settings of a setting's label (its comparable group), e.g.
    ``arch=mlp-deep, depth=4, epochs=8``; "—" when its label names none."""
    return ", ".join(text for c, text in setting.parts if not c.startswith("hp.")) or "—"


def per_seed_text(setting: Setting, key: str) -> str:
    """The metric's per-seed values at the column's decimals, in seed order (space-separated),
    ``invalid`` for a seed whose value is invalid (an AU count also where the seed's AU is)."""
    def bad(r: Any) -> bool:
        return bool(r.invalid(key) or (key == "au_count" and r.invalid("au")))
    if no_latent(setting, key):
        return "—"
    return " ".join(INVALID if bad(r) else fixed(r.metric(key), COLUMN[key].decimals)
                    for r in setting.ok if r.recorded(key)) or "—"


def _setting_labels(settings: Sequence[Setting], group: dict[str, str]) -> dict[str, str]:
    """Setting key -> its label in a settings table: the method's hyperparameters (:func:`hp_text`;
    what else tells rows apart is their ``group``), the full label where two settings of one method in
    one group would read the same (they differ in a setting that only some records hold)."""
    short = {s.key: hp_text(s) for s in settings}
    seen: dict[tuple[str, str, str], int] = {}
    for s in settings:
        seen[(group[s.key], s.method, short[s.key])] = seen.get((group[s.key], s.method, short[s.key]), 0) + 1
    return {s.key: short[s.key] if seen[(group[s.key], s.method, short[s.key])] == 1 else label_text(s)
            for s in settings}


def _group_label(setting: Setting, dataset: bool, columns: Sequence[str]) -> str:
    """A comparable group by the settings that tell it apart (``columns``; and its data set where a
    table has several), e.g. ``arch=mlp-deep, depth=4, epochs=8``."""
    parts = [text for c, text in setting.parts if c in columns]
    return ", ".join(([setting.dataset] if dataset else []) + parts) or "—"




def settings_table(settings: Sequence[Setting], with_dataset: bool = False,
                   extra: dict[str, list[str]] | None = None, per_seed: Sequence[str] = (),
                   drop: Sequence[str] = (), not_ok: bool = True) -> Table:
    """Mean ± std per setting and metric (the best of comparable rows marked, :func:`best_rows`), n
    ("k of P" when short of the plan), the runs that are not ok, per-seed values of the metrics
    ``per_seed`` and ``extra`` columns; the metric columns ``drop`` left out (and without ``not_ok``
    the column of runs that are not ok). The setting column names the method's hyperparameters
    (:func:`_setting_labels`). Where the rows fall into several groups of comparable rows (e.g. two
    architectures), they are ordered by group and a column ``group`` holds a short key (G1, G2, ...)
    whose settings a note below the table names (LaTeX: a line above each group's rows)."""
    columns = [c for c in columns_of(settings) if c.key not in drop]
    group, telling = comparable(settings), telling_columns(settings)
    keys = list(dict.fromkeys(group[s.key] for s in settings))  # in order of first appearance
    multi = len({s.dataset for s in settings}) > 1
    several = len(keys) > len({s.dataset for s in settings})
    index = {s.key: i for i, s in enumerate(settings)}
    extra = extra or {}
    if several:  # each group's rows together (stable: report order within a group)
        settings = sorted(settings, key=lambda s: (s.dataset, keys.index(group[s.key]), index[s.key]))
    header = (["dataset"] if with_dataset else []) + ["method", "setting"] + (["group"] if several else [])
    units = [""] * len(header) + [UNITS.get(c.key, "") for c in columns] + [""]
    header += [c.header for c in columns] + ["n"]
    marks = _marks(settings, columns)
    show_not_ok = not_ok and any(s.not_ok() for s in settings)
    if show_not_ok:
        header.append("not ok")
    header += [f"{COLUMN[k].name} per seed" for k in per_seed] + list(extra)
    units += [""] * (len(header) - len(units))
    names = {k: f"G{i + 1}" for i, k in enumerate(dict.fromkeys(group[s.key] for s in settings))}
    labels = _setting_labels(settings, group)
    rows, bold = [], []
    for s in settings:
        row = ([s.dataset] if with_dataset else []) + [s.method, labels[s.key]]
        row += [names[group[s.key]]] if several else []
        flags = [False] * len(row)
        for column in columns:
            row.append(cell_text(s, column.key)[0])
            flags.append(s.key in marks[column.key])
        row.append(s.n_text)
        flags.append(False)
        if show_not_ok:
            row.append(", ".join(f"{v} {k}" for k, v in s.not_ok().items()) or "")
            flags.append(False)
        row += [per_seed_text(s, k) for k in per_seed] + [values[index[s.key]] for values in extra.values()]
        flags += [False] * (len(per_seed) + len(extra))
        rows.append(row)
        bold.append(flags)
    align = ("l" * (2 if with_dataset else 1) + "p" + ("l" if several else "") + "r" * (len(columns) + 1)
             + ("l" if show_not_ok else "") + "r" * (len(per_seed) + len(extra)))
    first = {}
    for s in settings:
        first.setdefault(names[group[s.key]], s)
    key_note = ([GROUP_NOTE + "; ".join(f"{name} = {_group_label(s, multi, telling[s.dataset])}"
                                        for name, s in first.items())] if several else [])
    mi_note = mi_cap_note(settings) if "mi" in [c.key for c in columns] else None
    short = [SHORT_NOTE] if any(s.short for s in settings) else []
    invalid = invalid_notes(settings, [c.key for c in columns] + list(per_seed))
    groups = [_group_label(s, multi, telling[s.dataset]) for s in settings] if several else []
    return Table(header, rows, bold, align,
                 [bold_note(settings, columns, several)] + key_note + ([mi_note] if mi_note else [])
                 + image_notes(settings, columns) + text_notes(settings) + short + invalid,
                 groups=groups, group_column=header.index("group") if several else None, units=units)


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


def _metric_keys(settings: Sequence[Setting]) -> list[str]:
    """Every scalar metric of the ok runs (those flagged invalid included), and the wall time."""
    return sorted({k for s in settings for r in s.ok for k in r.record.metrics or {} if r.recorded(k)}
                  | {"wall_time_s"})


def settings_csv(settings: Sequence[Setting], comparisons: Sequence[Comparison] = ()) -> str:
    """Raw numbers: the setting columns, planned and ok seeds, mean / std / n of the valid values of
    every scalar metric and ``<metric>_invalid`` (the ok runs whose value is invalid, left out), which
    columns the row is best in, and (``comparisons``) AU against `vae`."""
    metric_keys = _metric_keys(settings)
    value_columns = sorted({c for s in settings for c in s.values} - {"dataset", "method"})
    marks = _marks(settings)
    by_key = {c.setting.key: c for c in comparisons}
    rows = []
    for s in settings:
        row: dict[str, Any] = {"dataset": s.dataset, "method": s.method, "setting": s.label}
        row.update({c: s.values.get(c) for c in value_columns})
        row["n"] = len(s.ok)
        row["planned"] = s.planned or None
        row["short"] = s.short
        row["headline"] = s.headline
        row["seeds"] = json.dumps([r.seed for r in s.ok])
        row["not_ok"] = "; ".join(f"{v} {k}" for k, v in s.not_ok().items())
        for key in metric_keys:
            mean, std, n = s.mean_std(key)
            row[f"{key}_mean"], row[f"{key}_std"], row[f"{key}_n"] = mean, std, n
            row[f"{key}_invalid"] = s.invalid(key)
        if "mi" in metric_keys:
            cap = s.mi_cap()
            row["mi_cap"], row["mi_at_cap"] = (cap[0] if cap else None), s.mi_at_cap()
        row["best"] = " ".join(c.key for c in columns_of(settings) if s.key in marks[c.key])
        if comparisons:
            result = (by_key[s.key].results.get("au") if s.key in by_key else None) or {}
            row.update({"au_diff_vs_vae": result.get("diff"), "au_p_exact_vs_vae": result.get("p"),
                        "au_p_min_vs_vae": result.get("p_min"), "au_p_holm_vs_vae": result.get("p_holm"),
                        "au_cliffs_delta_vs_vae": result.get("delta")})
        rows.append(row)
    return to_csv(pd.DataFrame(rows))


def per_seed_csv(settings: Sequence[Setting]) -> str:
    """Long format: one row per ok run and scalar metric it recorded (dataset, method, setting, seed,
    run id, metric, value as recorded, and ``invalid``: why the value is invalid, empty when it is valid)."""
    rows = []
    for s in settings:
        keys = _metric_keys([s])
        for run in s.ok:
            for key in keys:
                if run.recorded(key):
                    rows.append({"dataset": s.dataset, "method": s.method, "setting": s.label, "seed": run.seed,
                                 "run_id": run.run_id, "metric": key, "value": run.value(key),
                                 "invalid": run.invalid(key) or ""})
    return to_csv(pd.DataFrame(rows, columns=["dataset", "method", "setting", "seed", "run_id", "metric", "value",
                                              "invalid"]))


def headlines(data: GridData) -> list[Setting]:
    """The headline settings (declared in the grid; never chosen by a metric), in report order."""
    return [s for s in data.settings if s.headline]


def p_text(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def diff_text(result: dict[str, Any], decimals: int) -> str:
    """``Δ [low, high]``: the 95% CI from inverting the exact permutation test, ``[unbounded]``
    where no shift can give p <= ALPHA."""
    if result.get("diff") is None:
        return "—"
    sign = lambda v: ("+" if v > 0 else "") + fixed(v, decimals)  # noqa: E731
    ci = result["ci"]
    return sign(result["diff"]) + (" [unbounded]" if math.isinf(ci[1]) else f" [{sign(ci[0])}, {sign(ci[1])}]")


def stat_cells(result: dict[str, Any] | None, key: str, units: int | None = None) -> list[str]:
    """Δ [95% CI], p (exact permutation), smallest attainable p, p Holm (family members; * at most
    ALPHA), Cliff's δ; an AU difference in active units (a count, one decimal) where ``units`` gives
    the d latent dims its fractions are of."""
    if not result:
        return ["—"] * 5
    decimals = COLUMN[key].decimals
    if units and result.get("diff") is not None:
        ci = result["ci"]
        result, decimals = {**result, "diff": result["diff"] * units, "ci": (ci[0] * units, ci[1] * units)}, 1
    if result.get("p") is None:
        return [diff_text(result, decimals), result.get("note") or "—", "—", "—", "—"]
    holm = result.get("p_holm")
    holm_text = "—" if holm is None else p_text(holm) + (" *" if result.get("significant") else "")
    return [diff_text(result, decimals), p_text(result["p"]), p_text(result["p_min"]), holm_text,
            f"{result['delta']:+.2f}"]


def au_units(setting: Setting, baseline: Setting | None) -> int | None:
    """The d latent dims an AU difference of ``setting`` and ``baseline`` is counted in: both record
    AU counts (:func:`au_counts`) of the same d; else None (the difference stays a fraction)."""
    d = setting.config.latent_dim
    if baseline is None or baseline.config.latent_dim != d or not au_counts(setting) or not au_counts(baseline):
        return None
    return d


STAT_HEADER = ["Δ [95% CI]", "p exact", "min p", "p Holm", "Cliff's δ"]


def comparison_table(comparisons: Sequence[Comparison], key: str, baseline: str = BASELINE,
                     holm: bool = True) -> Table:
    """One metric of every comparison with ``baseline``: n, Δ [95% CI], exact p, smallest attainable
    p, Holm's p (``holm``: family members, primary metrics only) and Cliff's δ."""
    header = ["dataset", "method", "setting", f"n vs {baseline}"] + [h for h in STAT_HEADER if holm or h != "p Holm"]
    rows = []
    for c in comparisons:
        result = c.results.get(key) or {}
        n_base = n_text(c.baseline, result.get("n_base"), result.get("invalid_base")) if c.baseline else "0"
        row = [c.setting.dataset, c.setting.method, label_text(c.setting),
               f"{n_text(c.setting, result.get('n'), result.get('invalid'))} vs {n_base}"]
        units = au_units(c.setting, c.baseline) if key == "au" else None
        cells = stat_cells(c.results.get(key), key, units) if c.baseline else [c.note, "—", "—", "—", "—"]
        rows.append(row + (cells if holm else cells[:3] + cells[4:]))
    align = "llpl" + "r" * (len(header) - 4)
    notes = [SHORT_NOTE] if any(c.setting.short or (c.baseline and c.baseline.short) for c in comparisons) else []
    units = {au_units(c.setting, c.baseline) for c in comparisons if c.baseline} if key == "au" else set()
    if len(units) == 1 and None not in units:
        notes.append(f"Δ AU in active units (of the {units.pop()} latent dims)")
    elif units - {None}:
        notes.append("Δ AU in active units where both sides count the same latent dims, else as a fraction of them")
    notes += [INVALID_NOTE] if any(r.get("invalid") or r.get("invalid_base")
                                   for c in comparisons for r in [c.results.get(key) or {}]) else []
    return Table.plain(header, rows, align, notes)


def n_text(setting: Setting, n: int | None, invalid: int | None) -> str:
    """A side's n in a comparison: the values tested and the invalid ones left out (``4 (1 invalid)``),
    else the setting's ok seeds (:attr:`Setting.n_text`)."""
    return f"{n} ({invalid} {INVALID})" if invalid else setting.n_text


def comparison_csv(comparisons: Sequence[Comparison], keys: Sequence[str] = (), suffix: str = BASELINE) -> str:
    """Long format: one row per setting and metric (``keys``, else :func:`compared`) with every
    statistic and the per-seed values; the baseline's columns end in ``_<suffix>``."""
    rows = []
    for c in comparisons:
        for key in keys or compared(c.setting):
            r = c.results.get(key) or {}
            ci = r.get("ci") or (None, None)
            rows.append({"dataset": c.setting.dataset, "method": c.setting.method, "setting": c.setting.label,
                         "baseline": c.baseline.legend if c.baseline else None, "metric": key,
                         "primary": key in PRIMARY, "in_family": c.in_family and key in PRIMARY,
                         "n": r.get("n", len(c.setting.ok)), f"n_{suffix}": r.get("n_base"),
                         "invalid": r.get("invalid"), f"invalid_{suffix}": r.get("invalid_base"),
                         "planned": c.setting.planned or None,
                         f"planned_{suffix}": (c.baseline.planned or None) if c.baseline else None,
                         "values": json.dumps(r.get("values")) if r else None,
                         f"values_{suffix}": json.dumps(r.get("values_base")) if r else None,
                         "mean": r.get("mean"), f"mean_{suffix}": r.get("mean_base"), "diff": r.get("diff"),
                         "ci_low": ci[0], "ci_high": ci[1], "p_exact": r.get("p"), "p_min": r.get("p_min"),
                         "exact": r.get("exact"), "p_mann_whitney": r.get("p_mw"),
                         "p_mann_whitney_min": r.get("p_mw_min"),
                         "p_holm": r.get("p_holm"), "confirmatory": r.get("confirmatory"),
                         "significant": r.get("significant"), "cliffs_delta": r.get("delta"),
                         "note": "; ".join(x for x in (c.note, r.get("note", "")) if x)})
    columns = ["dataset", "method", "setting", "baseline", "metric", "primary", "in_family", "n", f"n_{suffix}",
               "invalid", f"invalid_{suffix}", "planned", f"planned_{suffix}", "values", f"values_{suffix}", "mean",
               f"mean_{suffix}", "diff", "ci_low", "ci_high", "p_exact", "p_min", "exact", "p_mann_whitney",
               "p_mann_whitney_min", "p_holm", "confirmatory", "significant", "cliffs_delta", "note"]
    return to_csv(pd.DataFrame(rows, columns=columns))


def stats_legend(family: Family | None, baseline: str = BASELINE) -> str:
    """What the comparison columns mean (Markdown); p Holm is starred only in a confirmatory family,
    and left out without a ``family`` (exploratory comparisons, e.g. with the language model)."""
    holm = ("" if family is None else "p Holm: " + (
        f"adjusted over the confirmatory family only (* at most {ALPHA:g})" if family.confirmatory else
        "adjusted over the Holm family only (not confirmatory, so never marked)") + "; ")
    return (f"Δ: setting mean − `{baseline}` mean, with its 95% CI from inverting the exact permutation test "
            "(shift model: every shift of the setting's seeds that the test does not reject): it excludes 0 exactly "
            f"when p ≤ {ALPHA:g}; [unbounded] where no shift can give p ≤ {ALPHA:g} with so few seeds (3 vs 3: "
            "p ≥ 2/20 = 0.1 whatever the values). p exact: two-sided exact permutation test "
            "of the difference in means over every split of the pooled seeds (the exact Mann-Whitney p is in the "
            "CSV); min p: the smallest p that test can give for these seeds (5 vs 5: 2/252 = 0.0079; 2 vs 2: "
            f"1/3). {holm}Cliff's δ = P(setting > {baseline}) − P(setting < {baseline}) over all seed pairs, in "
            "[−1, 1] (±1: every seed on one side; defined without any spread).")
