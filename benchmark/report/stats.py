"""Every setting against the plain VAE, for small n: difference in means with the 95% CI from
inverting the exact permutation test (it excludes 0 exactly when p <= ALPHA), exact permutation
and Mann-Whitney tests with their smallest attainable p, Cliff's delta, and Holm's adjustment
over a family fixed by the plan (:mod:`benchmark.report.exact`). Values a run's record marks
invalid are left out of every test.

The Holm family of a grid is every planned headline setting (named in the grid file; every
planned setting when the grid declares none) against `vae` on the primary metric AU, the language
model `lstm-lm` (no latents) left out. Its size comes from the plan, so it does not shrink when
settings fail: a planned comparison without a result enters with p = 1. It is confirmatory (p Holm
<= ALPHA marked significant) only when the plan records that the headline was first seen before
any run of the grid had a result (:attr:`benchmark.results.plan.Plan.preregistered`); otherwise it is
Holm-adjusted but exploratory.
Every other metric and setting is exploratory: raw exact p only, never marked significant, and so
is every text setting against the language model (NLL and PPL, :func:`compare_with_lm`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

from .exact import cliffs_delta, holm, mann_whitney, permutation_ci, permutation_test
from .load import BASELINE, LANGUAGE_MODEL, NOT_RECORDED, GridData, Setting, all_columns

COMPARED = ["au", "kl", "mi", "nll", "rec"]
LM_COMPARED = ["nll", "ppl"]  # against the language model: what z could gain
PRIMARY = ("au",)  # the confirmatory metric: the benchmark's question is whether latents stay active
ALPHA = 0.05


@dataclass
class Comparison:
    setting: Setting
    baseline: Setting | None
    note: str  # how the baseline was matched, or why there is none
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_family: bool = False  # part of the Holm family (its primary metrics are Holm-adjusted)


@dataclass
class Family:
    """The Holm family: its members (setting keys, planned ones without a result included),
    metrics, size m, the smallest Holm-adjusted p any member could reach, and when the plan first
    saw the headline (confirmatory only when that was before any result)."""

    members: list[str]
    metrics: tuple[str, ...]
    declared: bool  # the grid declares its headline (else: every planned setting)
    from_plan: bool  # the members come from the plan (else: from the records found)
    floor: float | None = None  # m x the smallest attainable p in the family: no Holm p can be below it
    # the headline was first seen before any run had a result (True), after some had (False), or
    # that is not recorded (None: no headline, no plan, or a plan from before it was recorded)
    preregistered: bool | None = None
    first_seen: str | None = None  # when the plan first saw the headline (UTC)
    results_before: int | None = None  # runs of the grid with a result then
    planned_runs: int | None = None  # runs the plan held then

    @property
    def size(self) -> int:
        return len(self.members) * len(self.metrics)

    @property
    def reachable(self) -> bool:
        return self.floor is not None and self.floor <= ALPHA

    @property
    def confirmatory(self) -> bool:
        """Its Holm p can support a claim: the headline was declared before any result."""
        return self.declared and self.preregistered is True


def compared(setting: Setting) -> list[str]:
    """The metrics compared with `vae`: :data:`COMPARED`, and PPL after IW-NLL for a setting on sentences."""
    return [k for key in COMPARED for k in ((key, "ppl") if key == "nll" and setting.text else (key,))]


def find_baseline(setting: Setting, settings: Sequence[Setting], baseline: str = BASELINE
                  ) -> tuple[Setting | None, str]:
    """The ``baseline`` method's setting on the same data set and architecture: identical model /
    train / data / eval settings if there is one; else the only one with the same model settings
    (the note names what differs)."""
    pool = [s for s in settings if s.method == baseline and s.dataset == setting.dataset]
    if not pool:
        return None, f"no {baseline} runs on {setting.dataset}"
    config = [c for c in all_columns([setting, *pool]) if not c.startswith("hp.") and c not in ("method",)]
    same = [b for b in pool if all(b.values.get(c) == setting.values.get(c) for c in config)]
    if len(same) == 1:
        return same[0], ""
    model = [c for c in config if c.startswith("model.") or c == "dataset"]
    same_model = [b for b in pool if all(b.values.get(c) == setting.values.get(c) for c in model)]
    if len(same_model) == 1:
        differ = [c for c in config if same_model[0].values.get(c) != setting.values.get(c)]
        return same_model[0], "baseline differs in " + ", ".join(differ)
    if not same_model:
        return None, f"no {baseline} run with the same architecture"
    return None, f"{len(same_model)} {baseline} settings with the same architecture; none matches exactly"


def compare(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Group ``a`` (a setting's per-seed values) against ``b`` (the baseline's): means, their
    difference with the CI from inverting the permutation test at level 1 - ALPHA (unbounded when
    no shift gives p <= ALPHA), exact permutation and Mann-Whitney p with their smallest attainable
    p, Cliff's delta; ``note`` says what could not be computed or bounded."""
    out: dict[str, Any] = {"n": len(a), "n_base": len(b), "values": list(a), "values_base": list(b), "mean": None,
                           "mean_base": None, "diff": None, "ci": None, "p": None, "p_min": None, "p_mw": None,
                           "p_mw_min": None, "exact": None, "delta": None, "note": ""}
    if a:
        out["mean"] = math.fsum(a) / len(a)
    if b:
        out["mean_base"] = math.fsum(b) / len(b)
    if not (a and b):
        out["note"] = NOT_RECORDED
        return out
    out["diff"] = out["mean"] - out["mean_base"]
    out["ci"] = permutation_ci(a, b, 1 - ALPHA)
    perm, mw = permutation_test(a, b), mann_whitney(a, b)
    out.update(p=perm.p, p_min=perm.p_min, p_mw=mw.p, p_mw_min=mw.p_min, exact=perm.exact, delta=cliffs_delta(a, b))
    if math.isinf(out["ci"][1]):
        out["note"] = f"{len(a)} vs {len(b)}: p > {ALPHA:g} at any shift, CI unbounded"
    return out


def planned_family(data: GridData) -> Family:
    """The Holm family of ``data``'s grid: its planned headline settings other than `vae` (every
    planned setting when the grid declares no headline), recorded or not, with when the plan first
    saw the headline. The language model `lstm-lm` has no latents (AU = 0 by construction): never a member."""
    pool = [*data.settings, *data.unrun]
    members = [s for s in pool if s.method not in (BASELINE, LANGUAGE_MODEL)
               and (s.headline or not data.headline_declared)]
    family = Family(sorted(s.key for s in members), PRIMARY, data.headline_declared, data.plan is not None)
    declared = (data.plan.declared or {}) if data.plan and data.headline_declared else {}
    before, runs = declared.get("results_before"), declared.get("runs")
    if isinstance(before, int) and not isinstance(before, bool):
        family.preregistered, family.results_before = data.plan.preregistered, before
        family.first_seen = str(declared.get("first_seen") or "at a time not recorded")
        family.planned_runs = runs if isinstance(runs, int) and not isinstance(runs, bool) else None
    return family


def invalid_note(setting: Setting, baseline: Setting, key: str) -> str:
    """What the test of ``key`` left out as invalid, per side (empty when nothing)."""
    parts = []
    for who, s in (("setting", setting), (baseline.method, baseline)):
        if s.invalid(key):
            parts.append(f"{s.invalid(key)} invalid {who} value{'s' if s.invalid(key) > 1 else ''} left out "
                         f"(n = {len(s.values_of(key))})")
    return "; ".join(parts)


def compare_with_vae(data: GridData) -> tuple[list[Comparison], Family]:
    """Every non-`vae` setting with ok runs against its `vae` baseline, on every compared metric;
    the family's primary metrics Holm-adjusted over the whole family."""
    family = planned_family(data)
    members = set(family.members)
    comparisons = []
    for s in data.settings:
        if s.method == BASELINE or not s.ok:
            continue
        base, note = find_baseline(s, data.settings)
        if base is not None and not base.ok:
            base, note = None, f"no ok {BASELINE} runs with the same setting"
        comp = Comparison(s, base, note, in_family=s.key in members)
        if base is not None:
            comp.results = compare_settings(s, base, compared(s))
        comparisons.append(comp)
    by_key = {c.setting.key: c for c in comparisons}
    for metric in family.metrics:
        pvalues, floors = {}, []
        for key in family.members:  # a planned comparison without a result enters with p = 1
            result = by_key[key].results.get(metric) if key in by_key else None
            pvalues[key] = result["p"] if result and result["p"] is not None else 1.0
            if result and result["p_min"] is not None:
                floors.append(result["p_min"])
        for key, p in holm(pvalues).items():
            if key in by_key and metric in by_key[key].results:
                result = by_key[key].results[metric]
                result.update(p_holm=p, confirmatory=family.confirmatory,
                              significant=(p <= ALPHA) if family.confirmatory else None)
        if floors:
            floor = len(pvalues) * min(floors)
            family.floor = floor if family.floor is None else min(family.floor, floor)
    return comparisons, family


def compare_settings(setting: Setting, baseline: Setting, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """:func:`compare` of ``setting``'s valid per-seed values with ``baseline``'s on each metric of
    ``keys``, with the invalid values each side left out."""
    results = {}
    for key in keys:
        result = compare(setting.values_of(key), baseline.values_of(key))
        result.update(invalid=setting.invalid(key), invalid_base=baseline.invalid(key))
        left_out = invalid_note(setting, baseline, key)
        if left_out:  # "not recorded" is wrong where both sides recorded values, all invalid on one
            wrong = result["note"] == NOT_RECORDED and setting.recorded(key) and baseline.recorded(key)
            result["note"] = "; ".join(x for x in ("" if wrong else result["note"], left_out) if x)
        results[key] = result
    return results


def compare_with_lm(data: GridData) -> list[Comparison]:
    """Every setting on sentences (`vae` included) with ok runs against the language model
    (`lstm-lm`) on the same data set and architecture, on NLL and PPL: exploratory (raw exact p, no
    Holm family). Only on data sets with `lstm-lm` runs."""
    with_lm = {s.dataset for s in data.settings if s.method == LANGUAGE_MODEL}
    comparisons = []
    for s in data.settings:
        if s.method == LANGUAGE_MODEL or not s.ok or not s.text or s.dataset not in with_lm:
            continue
        base, note = find_baseline(s, data.settings, LANGUAGE_MODEL)
        if base is not None and not base.ok:
            base, note = None, f"no ok {LANGUAGE_MODEL} runs with the same setting"
        comp = Comparison(s, base, note)
        if base is not None:
            comp.results = compare_settings(s, base, LM_COMPARED)
        comparisons.append(comp)
    return comparisons


def declaration_text(family: Family) -> str:
    """When the headline was declared, as the plan records it."""
    if not family.declared:
        return "the grid declares no headline"
    if family.preregistered:
        return (f"declared before the first run of the grid (headline first seen {family.first_seen}, "
                "before any result)")
    if family.preregistered is False:
        planned = "" if family.planned_runs is None else f" of {family.planned_runs}"
        return f"chosen after {family.results_before}{planned} runs had results (headline first seen {family.first_seen})"
    return "when the headline was declared is not recorded"


def not_confirmatory_text(family: Family) -> str:
    """Why the family's Holm p supports no claim (empty when it is confirmatory)."""
    if family.confirmatory:
        return ""
    if not family.from_plan:
        return ("Holm-adjusted over every setting found; not confirmatory: when the headline was declared is not "
                "recorded (no plan.json)")
    if not family.declared:
        return "Holm-adjusted over every planned setting; not confirmatory: the grid declares no headline"
    if family.preregistered is False:
        return "Holm-adjusted over the headline settings; not confirmatory: the headline was chosen after results existed"
    return "Holm-adjusted over the headline settings; not confirmatory: when the headline was declared is not recorded"


def family_text(family: Family) -> str:
    """One paragraph: what the family is, its size, when its headline was declared, whether it is
    confirmatory and whether any member can reach ALPHA."""
    if not family.members:
        return "No Holm family: no planned setting other than `vae`."
    who = "the grid's headline settings" if family.declared else "every planned setting (the grid declares no `headline`)"
    where = "from the plan" if family.from_plan else "from the records found (no plan.json)"
    name = "Confirmatory family" if family.confirmatory else "Holm family"
    text = (f"{name} ({where}): {who} against `{BASELINE}` on " + ", ".join(m.upper() for m in family.metrics)
            + f", m = {family.size} comparisons" + (", Holm-adjusted" if family.confirmatory else "")
            + f", α = {ALPHA:g}; a planned comparison without a result counts with p = 1, so the family does not "
            "shrink as settings fail. " + (f"Headline: {declaration_text(family)}. " if family.declared else ""))
    text += ("Every other p is exploratory (raw, never marked)." if family.confirmatory else
             f"{not_confirmatory_text(family)}; no p is marked significant, every p is exploratory.")
    if family.floor is not None and not family.reachable:
        text += (f" **No comparison of this family can reach α = {ALPHA:g}**: m × the smallest attainable p = "
                 f"{family.floor:.3g} > {ALPHA:g}" + ("; more seeds are needed for a confirmatory claim."
                                                     if family.confirmatory else "."))
    return text
