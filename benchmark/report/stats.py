"""Every setting against the plain VAE: Welch's t-test, Holm-adjusted p-values and Cohen's d."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

from .load import BASELINE, NOT_RECORDED, GridData, Setting, all_columns

N_TOO_SMALL = "n too small"
COMPARED = ["au", "kl", "mi", "nll", "rec"]


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
