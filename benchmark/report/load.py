"""Loading a grid's results for the report: its records grouped into settings, and its plan.

A *setting* is one method x hyperparameters x model / train / data / eval settings of one data
set; its runs are the seeds. Records are read through the store (:mod:`benchmark.results.store`),
which also names the files that are no readable record. Settings are grouped and labelled by the
columns of the runs table (which vary, which the grid names); what the report reads of a setting
by name it reads typed (:class:`SettingConfig`, built here once per run from its config).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import MI_CAP_MARGIN, EvalConfig, ModelConfig, RunConfig
from ..results.plan import Plan
from ..results.record import Record
from ..results.store import ResultStore
from ..results.table import invalid_values, records_table, setting_columns
from .exact import sample_mean_std

BASELINE = "vae"
LANGUAGE_MODEL = "lstm-lm"  # the text baseline: the decoder without z (KL = MI = AU = 0, its IW-NLL exact)
NOT_RECORDED = "not recorded"
PLANNED = "planned"  # status of a stand-in for a planned run without a record


_MODEL, _EVAL = ModelConfig(), EvalConfig()


@dataclass(frozen=True)
class SettingConfig:
    """The settings the report reads by name, typed: the same for every run (seed) of a setting."""

    dataset: str = "fashion-mnist"
    method: str = "vae"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    arch: str = _MODEL.arch
    latent_dim: int = _MODEL.latent_dim
    likelihood: str = _MODEL.likelihood
    au_threshold: float = _EVAL.au_threshold
    mi_batch_size: int = _EVAL.mi_batch_size

    @classmethod
    def of(cls, config: RunConfig) -> SettingConfig:
        return cls(config.dataset.name, config.method, config.hyperparameters, config.model.arch,
                   config.model.latent_dim, config.model.likelihood, config.eval.au_threshold, config.eval.mi_batch_size)

    def hp(self, name: str) -> Any:
        """Hyperparameter ``name``'s value, None when the method has none of that name."""
        return self.hyperparameters.get(name)


@dataclass
class Run:
    """One readable record, its typed settings and its setting columns."""

    record: Record
    setting: dict[str, Any]  # setting columns (records_table's names) -> plain value or None: grouping, labels
    config: SettingConfig = field(default_factory=SettingConfig)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def status(self) -> str:
        return str(self.record.status)

    @property
    def seed(self) -> int:
        return self.record.config.seed

    @property
    def dataset(self) -> str:
        return self.config.dataset

    @property
    def method(self) -> str:
        return self.config.method

    def value(self, key: str) -> float | None:
        """The number recorded for metric ``key`` (finite or not), None when there is none."""
        value = self.record.wall_time_s if key == "wall_time_s" else (self.record.metrics or {}).get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def invalid(self, key: str) -> str | None:
        """Why metric ``key`` is invalid (its estimator's own check rejects it, or it is not finite);
        None when it is valid or not recorded."""
        value = self.value(key)
        reason = invalid_values(self.record).get(key)
        return reason or (None if value is None or math.isfinite(value) else "not finite")

    @property
    def text(self) -> bool:
        """A run on sentences: its evaluation counted the predicted tokens (``estimators.tokens``)."""
        return "tokens" in (self.record.estimators or {})

    def not_applicable(self, step: str) -> str | None:
        """Why metric or evaluation step ``step`` has no value for this run's kind of data
        (``estimators.not_applicable``); None when it applies."""
        reasons = (self.record.estimators or {}).get("not_applicable")
        reason = reasons.get(step) if isinstance(reasons, dict) else None
        return str(reason) if reason else None

    def recorded(self, key: str) -> bool:
        """Whether the run has metric ``key``, valid or not."""
        return self.value(key) is not None or self.invalid(key) is not None

    def metric(self, key: str) -> float | None:
        """The valid value of metric ``key``: None when it is not recorded or invalid."""
        return None if self.invalid(key) else self.value(key)


@dataclass
class Setting:
    """One method x hyperparameter x model / train / data setting of one data set: its seeds."""

    key: str
    dataset: str
    method: str
    values: dict[str, Any]  # setting columns (records_table's names): grouping and labels
    runs: list[Run] = field(default_factory=list)
    label: str = ""
    parts: list[tuple[str, str]] = field(default_factory=list)  # (column, "name=value") behind the label
    sort_key: tuple = ()
    planned: int = 0  # runs (seeds) the plan holds for this setting; 0 without a plan
    headline: bool = False  # in the headline (declared in the grid, see :func:`mark_headline`)
    # metrics the method inflates by construction (the plan's ``methods``), never marked best
    guaranteed: tuple[str, ...] = ()
    config: SettingConfig = field(default_factory=SettingConfig)  # its first run's (every run's)

    @property
    def short(self) -> bool:
        """Fewer ok seeds than planned (a failed, diverged or missing run): marked wherever it appears."""
        return self.planned > 0 and len(self.ok) < self.planned

    @property
    def n_text(self) -> str:
        """``n`` as shown: the ok seeds, and ``of P`` when fewer than the P planned."""
        return f"{len(self.ok)} of {self.planned}" if self.short else str(len(self.ok))


    @property
    def ok(self) -> list[Run]:
        return sorted((r for r in self.runs if r.status == "ok"), key=lambda r: (order(r.seed), r.run_id))

    def values_of(self, key: str) -> list[float]:
        """The valid values of metric ``key`` over the ok runs, in seed order (invalid ones left out)."""
        return [v for v in (r.metric(key) for r in self.ok) if v is not None]

    def invalid(self, key: str) -> int:
        """How many ok runs have metric ``key`` invalid (left out of :meth:`values_of`)."""
        return sum(1 for r in self.ok if r.invalid(key))

    def recorded(self, key: str) -> int:
        """How many ok runs have metric ``key``, valid or not."""
        return sum(1 for r in self.ok if r.recorded(key))

    def mean_std(self, key: str) -> tuple[float | None, float | None, int]:
        values = self.values_of(key)
        mean, std = sample_mean_std(values)
        return mean, std, len(values)

    def not_ok(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self.runs:
            if run.status != "ok":
                counts[run.status] = counts.get(run.status, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def text(self) -> bool:
        """A setting on sentences (its ok runs are text runs: :attr:`Run.text`)."""
        return any(r.text for r in self.ok)

    @property
    def legend(self) -> str:
        """The method and, unless it has a single setting, the setting's label."""
        return self.method + ("" if self.label == "—" else f" ({self.label})")

    @property
    def likelihood(self) -> str:
        return self.config.likelihood

    def mi_cap(self) -> tuple[float, float, int] | None:
        """MI cap log N (nats, the mean over the ok runs with MI that record ``estimators.mi_cap``),
        the margin within which the mean MI counts as at cap (``estimators.mi_cap_margin``, default
        :data:`MI_CAP_MARGIN`) and the mixture size N; None when no run records a cap."""
        caps, margins, sizes = [], [], set()
        for run in self.ok:
            estimators = run.record.estimators or {}
            cap, margin = estimators.get("mi_cap"), estimators.get("mi_cap_margin")
            if run.metric("mi") is None or not finite(cap):
                continue
            caps.append(float(cap))
            margins.append(float(margin) if finite(margin) else MI_CAP_MARGIN)
            size = estimators.get("mi_mixture_size")
            sizes.add(int(size) if finite(size) else round(math.exp(cap)))
        if not caps:
            return None
        return math.fsum(caps) / len(caps), math.fsum(margins) / len(margins), max(sizes)

    def mi_at_cap(self) -> bool:
        """Whether the mean MI over seeds is within the margin of the cap (False without a cap)."""
        cap, mean = self.mi_cap(), self.mean_std("mi")[0]
        return cap is not None and mean is not None and mean >= cap[0] - cap[1]


@dataclass
class GridData:
    """The records of one grid (readable and not), their settings, and the plan ``run`` wrote."""

    name: str
    runs_dir: Path
    runs: list[Run]
    unreadable: list[tuple[str, str]]  # (file name, why)
    plan: Plan | None = None
    settings: list[Setting] = field(default_factory=list)  # with at least one record
    unrun: list[Setting] = field(default_factory=list)  # planned settings without any record

    @property
    def headline_declared(self) -> bool:
        return bool(self.plan and self.plan.headline)

    @property
    def description(self) -> str:
        return self.plan.description if self.plan else ""

    def datasets(self) -> list[str]:
        return sorted({s.dataset for s in self.settings})

    def settings_of(self, dataset: str) -> list[Setting]:
        return [s for s in self.settings if s.dataset == dataset]


def not_applicable(settings: Sequence[Setting], step: str) -> str | None:
    """Why ``step`` has no value for any of ``settings``: the reason their ok runs record, when every
    one of them records one (None when any run has it applicable, or there are no ok runs)."""
    reasons = sorted({r.not_applicable(step) or "" for s in settings for r in s.ok})
    return reasons[0] if reasons and "" not in reasons else None


def finite(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plain(value: Any) -> Any:
    """numpy / pandas scalars -> Python; NaN / NA -> None."""
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def order(value: Any) -> tuple:
    """A total order over mixed values: None first, then numbers, then text."""
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, bool):
        return (1, float(value), "")
    if isinstance(value, (int, float)):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def method_order(method: str) -> tuple:
    return (method != BASELINE, method)


def with_defaults(setting: dict[str, Any], record: Record) -> dict[str, Any]:
    """``setting`` with the settings ``record``'s file lacked (added to the config after it was
    written: ``record.config_absent``) at the value they were read as, their default. A grid whose
    newer records write a setting out (e.g. ``train.precision = "fp32"``) and whose older ones do
    not then has one setting, not two labelled by a column nobody varied."""
    filled = dict(setting)
    absent = [name for name in record.config_absent if name in filled and filled[name] is None]
    config = record.config.to_dict() if absent else {}
    for name in absent:
        section, key = name.split(".", 1)
        filled[name] = plain(config[section][key])
    return filled


def load_grid_records(grid_dir: Path) -> GridData:
    """The records under ``grid_dir`` (through its store), grouped into settings labelled with
    the hyperparameters that vary or that the plan's grid entries name."""
    store = ResultStore(grid_dir.parent, grid_dir.name)
    good, unreadable = store.scan()
    plan = store.read_plan()
    recorded = {r.run_id for r in good}
    # the plan's runs without a record stand in as "planned" records, so that every planned setting
    # is known (its seeds counted, its label the same whichever runs have finished)
    planned = [Record(p.run_id, p.config, p.label, status=PLANNED, config_absent=p.config_absent) for p in (plan.runs if plan else ())
               if p.run_id not in recorded]
    runs: list[Run] = []
    if good or planned:
        table = records_table([*good, *planned])
        by_id = {r.run_id: r for r in [*good, *planned]}
        columns = setting_columns(table)
        for _, row in table.iterrows():
            record = by_id[row["run_id"]]
            setting = with_defaults({c: plain(row[c]) for c in columns}, record)
            runs.append(Run(record, setting, SettingConfig.of(record.config)))
    settings = group_settings(runs, plan.named_hyperparameters() if plan else {})
    planned_ids = {p.run_id for p in plan.runs} if plan else set()
    for s in settings:
        s.planned = sum(1 for r in s.runs if r.run_id in planned_ids)
        s.runs = [r for r in s.runs if r.status != PLANNED]
    mark_headline(settings, plan.headline if plan else ())
    for s in settings:
        s.guaranteed = plan.guaranteed(s.method) if plan else ()
    data = GridData(grid_dir.name, store.runs_dir, [r for r in runs if r.status != PLANNED], unreadable, plan)
    data.settings = [s for s in settings if s.runs]
    data.unrun = [s for s in settings if not s.runs]
    return data


def matches(setting: Setting, entry: dict[str, Any]) -> bool:
    """Whether ``setting`` is the method and hyperparameter values of a headline ``entry``
    (``{"method": name, "hyperparameters": {name: value}}``)."""
    return setting.method == entry["method"] and all(
        setting.config.hp(k) == v for k, v in entry["hyperparameters"].items())


def architecture(setting: Setting) -> str:
    """The data set and every setting column but the method's hyperparameters (one "architecture")."""
    return json.dumps([setting.dataset] + [[c, v] for c, v in sorted(setting.values.items())
                                           if not c.startswith("hp.") and c not in ("dataset", "method")], default=str)


def mark_headline(settings: Sequence[Setting], declared: Sequence[dict[str, Any]]) -> None:
    """The headline settings: for a method the grid's ``headline`` names, the settings matching one
    of its entries; for any other method, its setting where it has exactly one per data set and
    architecture (e.g. `vae`). Nothing is ever chosen by a metric."""
    named = {e["method"] for e in declared}
    arch = {s.key: architecture(s) for s in settings}
    count: dict[tuple[str, str], int] = {}
    for s in settings:
        count[(s.method, arch[s.key])] = count.get((s.method, arch[s.key]), 0) + 1
    for s in settings:
        if s.method in named:
            s.headline = any(matches(s, e) for e in declared)
        else:
            s.headline = count[(s.method, arch[s.key])] == 1


def group_settings(runs: list[Run], named: dict[str, set[str]] | None = None) -> list[Setting]:
    """Settings (sorted: data set, `vae` first then methods by name, then setting values) with labels
    naming the hyperparameters that vary within the method or that the grid names for it (``named``), and
    any model / train / data / eval setting that varies within the data set."""
    groups: dict[str, Setting] = {}
    for run in runs:
        key = json.dumps(sorted(run.setting.items()), default=str)
        if key not in groups:
            groups[key] = Setting(key, run.dataset, run.method, dict(run.setting), config=run.config)
        groups[key].runs.append(run)
    settings = list(groups.values())
    for dataset in sorted({s.dataset for s in settings}):
        in_dataset = [s for s in settings if s.dataset == dataset]
        shared = [c for c in all_columns(in_dataset) if not c.startswith("hp.") and c not in ("dataset", "method")
                  and len({json.dumps(s.values.get(c), default=str) for s in in_dataset}) > 1]
        for method in sorted({s.method for s in in_dataset}):
            mine = [s for s in in_dataset if s.method == method]
            listed = {f"hp.{k}" for k in (named or {}).get(method, set())}
            varying = [c for c in all_columns(mine) if c.startswith("hp.") and (
                c in listed or len({json.dumps(s.values.get(c), default=str) for s in mine}) > 1)] + shared
            for s in mine:
                # a model / train setting the preset does not have (e.g. `depth` of a one-layer MLP) is left out
                s.parts = [(c, f"{_short(c)}={value_text(s.values.get(c))}") for c in varying
                           if not (c in shared and s.values.get(c) is None)]
                s.label = ", ".join(text for _, text in s.parts) or "—"
                s.sort_key = (method_order(method), tuple(order(s.values.get(c)) for c in varying), s.key)
    return sorted(settings, key=lambda s: (s.dataset, s.sort_key))


def relabel(settings: Sequence[Setting]) -> dict[str, Setting]:
    """Copies of ``settings`` (by key) whose labels leave out the model / train / data settings that
    all of them share (e.g. one architecture while the plan holds two): shorter figure legends."""
    common = set.intersection(*({text for c, text in s.parts if not c.startswith("hp.")} for s in settings)) \
        if settings else set()
    out = {}
    for s in settings:
        parts = [(c, text) for c, text in s.parts if text not in common or c.startswith("hp.")]
        out[s.key] = dataclasses.replace(s, parts=parts, label=", ".join(text for _, text in parts) or "—")
    return out


def all_columns(settings: Iterable[Setting]) -> list[str]:
    return sorted({c for s in settings for c in s.values})


def _short(column: str) -> str:
    return column.split(".", 1)[1] if "." in column else column


def value_text(value: Any) -> str:
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
