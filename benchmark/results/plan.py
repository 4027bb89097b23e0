"""A grid's plan: every run it holds, as ``run`` expanded it, written beside the records.

``<results>/<grid>/plan.json`` is written (atomically) by ``python -m benchmark run`` before it
trains anything: the grid's runs with the command's ``--seeds`` / ``--epochs`` (all of them, not
narrowed by ``--methods`` / ``--datasets``), each with its run id, label, config and the
hyperparameters its grid entry names, and the ``--set`` overrides applied to the grid file
(``overrides``; absent when none). The report reads it to list the runs that have no record
yet and to label settings, so it never interprets grid files itself. :meth:`Plan.from_json` is
the one place a plan file is parsed and checked (a :class:`~benchmark.results.record.RecordError`
naming the file and the field); its configs are typed like a record's (:class:`TypedConfig`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..config import RunConfig
from .record import RecordError, TypedConfig, expect, parse_json

PLAN_VERSION = 1
PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan."""

    run_id: str
    label: str  # RunConfig.label()
    named: tuple[str, ...]  # hyperparameters its grid entry sets explicitly (named in setting labels)
    config: RunConfig
    # the config settings the plan file left out (TypedConfig.absent), left out again when written
    config_absent: tuple[str, ...] = dataclasses.field(default=(), compare=False, repr=False)

    @property
    def dataset(self) -> str:
        return self.config.dataset.name

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def seed(self) -> int:
        return self.config.seed

    @classmethod
    def from_dict(cls, data: Any, where: str = "run") -> PlannedRun:
        """The planned run in ``data`` (its JSON object in the plan); a :class:`RecordError` naming
        the field (``where.<field>``) when it is none."""
        expect(data, dict, where)
        typed = TypedConfig.parse(data.get("config"), f"{where}.config")
        return cls(expect(data.get("run_id"), str, f"{where}.run_id"), expect(data.get("label"), str, f"{where}.label"),
                   tuple(expect(data.get("named"), list, f"{where}.named")), typed.config, typed.absent)

    @classmethod
    def of(cls, config: RunConfig, named: tuple[str, ...], run_id: str | None = None) -> PlannedRun:
        """The planned run of ``config``; ``run_id``: its run id, when known already."""
        return cls(run_id or config.run_id, config.label(), tuple(named), config)


class ConfigDicts:
    """``RunConfig.to_dict()`` of many configs, each object they hold turned into plain data once
    (the runs of a setting share their sections, :meth:`benchmark.planning.grid.Grid.runs`); the dicts
    returned share those parts, so they are read, never changed."""

    def __init__(self) -> None:
        self._parts: dict[int, tuple[Any, Any]] = {}  # id -> (the object, kept alive; its plain data)

    def __call__(self, config: RunConfig) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if isinstance(value, (str, int, float, type(None))):
                values[f.name] = value
                continue
            hit = self._parts.get(id(value))
            if hit is None:
                plain = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
                hit = self._parts[id(value)] = (value, plain)
            values[f.name] = hit[1]
        return values


@dataclass(frozen=True)
class Plan:
    """The runs of grid ``grid`` (from ``source``), in the order ``run`` runs them."""

    grid: str
    description: str
    source: str  # the grid file
    runs: tuple[PlannedRun, ...]
    plan_version: int = PLAN_VERSION
    # the grid's headline settings: {"method": name, "hyperparameters": {name: value}}
    headline: tuple[dict[str, Any], ...] = ()
    # when this headline was first seen: {"sha256": of the headline, "first_seen": UTC time,
    # "results_before": runs of the grid's folder with a record then (superseded ones included),
    # "runs": planned runs}; results_before = 0 is what makes a headline pre-registered
    declared: dict[str, Any] | None = None
    # what the report needs to know of each method of the plan without importing it:
    # {method: {"guarantees": [metrics its constraint inflates by construction]}}
    methods: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # the `run --set KEY=VALUE` overrides applied to the grid file, in order: [{"key", "value"}]
    overrides: tuple[dict[str, Any], ...] = ()

    def guaranteed(self, method: str) -> tuple[str, ...]:
        """The metrics method ``method`` inflates by construction (never marked best)."""
        return tuple(self.methods.get(method, {}).get("guarantees", ()))

    @property
    def headline_sha256(self) -> str:
        return hashlib.sha256(json.dumps(list(self.headline), sort_keys=True).encode()).hexdigest()

    @property
    def preregistered(self) -> bool:
        """The headline was first seen before any run of the grid had a result."""
        return bool(self.headline) and self.declared is not None and self.declared.get("results_before") == 0

    def declaration(self, previous: Plan | None, results: int, now: str) -> Plan:
        """This plan with its headline's declaration: the previous plan's when it held the same
        headline, else one made ``now`` with ``results`` runs already done."""
        if not self.headline:
            return dataclasses.replace(self, declared=None)
        if previous is not None and previous.declared and previous.declared.get("sha256") == self.headline_sha256:
            return dataclasses.replace(self, declared=previous.declared)
        return dataclasses.replace(self, declared={"sha256": self.headline_sha256, "first_seen": now,
                                                   "results_before": results, "runs": len(self.runs)})

    def named_hyperparameters(self) -> dict[str, set[str]]:
        """Method -> the hyperparameters any of its grid entries names."""
        named: dict[str, set[str]] = {}
        for run in self.runs:
            named.setdefault(run.method, set()).update(run.named)
        return named

    def to_json(self) -> str:
        values = ConfigDicts()
        runs = [{"run_id": r.run_id, "label": r.label, "named": list(r.named),
                 "config": TypedConfig(r.config, r.config_absent).to_dict() if r.config_absent else values(r.config)}
                for r in self.runs]
        data = {"plan_version": self.plan_version, "grid": self.grid, "description": self.description,
                "source": self.source, "runs": runs}
        if self.headline:
            data["headline"] = list(self.headline)
        if self.declared:
            data["headline_declared"] = self.declared
        if self.methods:
            data["methods"] = self.methods
        if self.overrides:
            data["overrides"] = list(self.overrides)
        return json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "plan") -> Plan:
        """The plan in ``text``, the content of file ``source``; a :class:`RecordError` naming
        ``source`` and the field when it is none."""
        def parse(data: Any) -> Plan:
            try:
                return cls._parse(data)
            except RecordError:
                raise
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise RecordError(f"not a plan ({type(exc).__name__}: {exc})") from None

        return parse_json(text, source, parse)

    @classmethod
    def _parse(cls, data: Any) -> Plan:
        expect(data, dict, "plan")
        runs = [PlannedRun.from_dict(r, f"runs[{index}]") for index, r in enumerate(expect(data.get("runs"), list, "runs"))]
        headline = tuple({"method": str(e["method"]), "hyperparameters": dict(e["hyperparameters"])}
                         for e in data.get("headline", []))
        declared = data.get("headline_declared")
        methods = data.get("methods")
        overrides = tuple({"key": str(o["key"]), "value": o["value"]} for o in data.get("overrides", []))
        return cls(str(data["grid"]), str(data.get("description", "")), str(data.get("source", "")), tuple(runs),
                   int(data["plan_version"]), headline, dict(declared) if isinstance(declared, dict) else None,
                   dict(methods) if isinstance(methods, dict) else {}, overrides)
