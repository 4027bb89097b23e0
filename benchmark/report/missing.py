"""What is missing from a grid's results: planned runs without a record (from the plan ``run``
wrote), failed and diverged runs with their reasons, values their estimator's own checks reject
(invalid, left out of means and tests), runs resumed from a checkpoint, unreadable files, and
fields some ok runs lack."""

from __future__ import annotations

import json
from typing import Any

from ..config import ConfigSection
from ..errors import first_line
from ..results.plan import PLAN_FILE
from .format import md_escape
from ..results.table import invalid_values
from .load import NOT_RECORDED, GridData, value_text


def _flat(section: ConfigSection) -> dict[str, Any]:
    """A config section's settings with the architecture's ``options`` merged in (as the runs table names them)."""
    out = {k: v for k, v in section.to_dict().items() if k != "options"}
    out.update(getattr(section, "options", {}))
    return out


def planned_missing(data: GridData) -> list[str]:
    """The planned runs without a record, per data set, method and the values of the
    hyperparameters its grid entry names, in plan order: ``dataset · method (values) · seeds``."""
    if data.plan is None:
        return []
    recorded = {r.run_id for r in data.runs}
    groups: dict[tuple, list[Any]] = {}
    # model / train settings that differ between planned runs of a data set (e.g. two architectures)
    sections = {run.dataset: {} for run in data.plan.runs}
    for run in data.plan.runs:
        for section in ("model", "train"):
            for key, value in _flat(getattr(run.config, section)).items():
                sections[run.dataset].setdefault(f"{section}.{key}", set()).add(json.dumps(value, sort_keys=True))
    for run in data.plan.runs:
        values = tuple((k, run.config.hyperparameters.get(k)) for k in sorted(run.named))
        flat = {f"{section}.{k}": v for section in ("model", "train")
                for k, v in _flat(getattr(run.config, section)).items()}
        shared = tuple((c.split(".", 1)[1], flat.get(c)) for c, seen in sorted(sections[run.dataset].items())
                       if len(seen) > 1 and flat.get(c) is not None)
        absent = groups.setdefault((run.dataset, run.method, values + shared), [])
        if run.run_id not in recorded:
            absent.append(run.seed)
    lines = []
    for (dataset, method, values), absent in groups.items():
        if absent:
            label = ", ".join(f"{k}={value_text(v)}" for k, v in values) or "defaults"
            lines.append(f"{dataset} · {method} ({label}) · seeds {', '.join(map(str, absent))}: not run yet")
    return lines


def missing_section(data: GridData) -> list[str]:
    out: list[str] = []
    planned = planned_missing(data)
    if data.plan is None:
        out.append(f"- Note: no readable `{PLAN_FILE}` beside the records (results from before `run` wrote its plan), "
                   "so runs not started yet cannot be listed; rerun `python -m benchmark run` with the grid to write it.")
    if planned:
        out.append(f"- **Not run yet** ({len(planned)}):")
        out += [f"  - {line}" for line in planned]
    bad = sorted((r for r in data.runs if r.status != "ok"), key=lambda r: (r.dataset, r.status, r.run_id))
    for status in sorted({r.status for r in bad}):
        group = [r for r in bad if r.status == status]
        out.append(f"- **{status.capitalize()}** ({len(group)}):")
        for r in group:
            label = r.record.label or f"{r.method} seed {r.seed}"
            error = r.record.error
            reason = first_line(error.message if error else None) or "no error message recorded"
            if status == "diverged" and r.record.diverged_epoch is not None:
                reason = f"epoch {r.record.diverged_epoch}: {reason}"
            elif error and error.type:
                reason = f"{error.type}: {reason}"
            out.append(f"  - `{r.run_id}` {md_escape(label)} — {md_escape(reason)}")
    invalid = [(r, invalid_values(r.record)) for r in sorted(data.runs, key=lambda r: (r.dataset, r.run_id))
               if r.status == "ok" and invalid_values(r.record)]
    if invalid:
        out.append(f"- **Invalid values** ({sum(len(v) for _, v in invalid)} in {len(invalid)} ok runs): their "
                   "estimator's own check rejects them (docs/metrics.md); left out of means, tests and rankings:")
        out += [f"  - `{r.run_id}` {md_escape(r.record.label or r.method)} — "
                + "; ".join(f"{key}: {md_escape(first_line(reason))}" for key, reason in values.items())
                for r, values in invalid]
    resumed = sorted((r for r in data.runs if (r.record.resumed or 0) > 0), key=lambda r: r.run_id)
    if resumed:
        out.append(f"- Resumed from a checkpoint ({len(resumed)}); their times add up every process that worked on "
                   "them (up to the checkpoint each resumed from):")
        out += [f"  - `{r.run_id}` {md_escape(r.record.label or r.method)} — resumed "
                f"{r.record.resumed} time{'s' if r.record.resumed != 1 else ''}" for r in resumed]
    if data.unreadable:
        out.append(f"- **Unreadable records** ({len(data.unreadable)}), ignored:")
        out += [f"  - `{name}` — {md_escape(first_line(reason))}" for name, reason in data.unreadable]
    ok = [r for r in data.runs if r.status == "ok"]
    # a field that is present but empty was recorded (e.g. `artifacts: {}` for 2-D data without images);
    # a run whose record marks the field's step not applicable to its data (sentences: noise) lacks nothing
    fields = [("IW-NLL (`metrics.nll`)", lambda r: r.recorded("nll"), "nll"),
              ("MI (`metrics.mi`)", lambda r: r.recorded("mi"), "mi"),
              ("per-class AU (`per_class`)", lambda r: r.record.per_class is not None, "per_class"),
              ("noise sensitivity (`noise`)", lambda r: r.record.noise is not None, "noise_sensitivity"),
              ("stored images (`artifacts`)", lambda r: r.record.artifacts is not None, "images"),
              ("MI curve points (`curves[].test_mi`)",
               lambda r: any("test_mi" in p for p in r.record.curves or []), "mi")]
    for name, has, step in fields:
        lacking = [r for r in ok if not has(r) and not r.not_applicable(step)]
        if lacking:
            out.append(f"- {name} {NOT_RECORDED} in {len(lacking)} of {len(ok)} ok runs.")
    if not any(line.startswith("- **") or f" {NOT_RECORDED} in " in line for line in out):
        out.append("- Nothing else: every run found or planned has an ok record with every field.")
    return out
