"""The runs table and its summary, always rebuilt from the records.

``runs.csv``: one row per record (ids, every hyperparameter as ``hp.*``, model / train / data /
eval settings, status details, every scalar metric as recorded, and ``invalid``: the metrics
whose value its estimator's own check rejects, names joined by ``;``, empty when none).
``summary.csv``: per setting, over the seeds of its ``ok`` runs, ``<metric>_mean`` and
``<metric>_std`` of the valid values, ``<metric>_invalid`` (how many of those runs had that
metric invalid, left out of the mean and std; a column for every summarised metric, 0 when
none) and ``n`` (the ok runs). The report groups settings with the same columns
(:func:`setting_columns`).
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable

import pandas as pd

from .record import Record

ID_COLUMNS = ["run_id", "status", "method", "dataset", "seed"]
SUMMARY_METRICS = ["au", "au_count", "kl", "mi", "nll", "rec", "neg_elbo", "mse", "wall_time_s"]
SETTING_PREFIXES = ("hp.", "model.", "train.", "dataset.", "eval.")


def invalid_values(record: Record) -> dict[str, str]:
    """Metric -> why its value is invalid: flagged in the record (``invalid``, from its
    estimator's own checks), or not finite (records from before the flag flag nothing)."""
    found = {k: "not finite" for k, v in (record.metrics or {}).items()
             if isinstance(v, float) and not math.isfinite(v)}
    return dict(sorted({**found, **(record.invalid or {})}.items()))


def records_table(records: Iterable[Record]) -> pd.DataFrame:
    """One row per record: ids, every hyperparameter (``hp.*``), model / train / data settings,
    status details, every scalar metric and the invalid ones (``invalid``, joined by ``;``)."""
    rows = []
    for r in records:
        config = r.config
        row: dict[str, Any] = {"run_id": r.run_id, "status": r.status, "method": config["method"],
                               "dataset": config["dataset"]["name"], "seed": config["seed"]}
        row.update({f"hp.{k}": _cell(v) for k, v in config["hyperparameters"].items()})
        for section in ("model", "train", "dataset", "eval"):
            for key, value in config[section].items():
                if key == "options":
                    row.update({f"model.{k}": _cell(v) for k, v in value.items()})
                elif key != "name":
                    row[f"{section}.{key}"] = _cell(value)
        row["error"] = (r.error or {}).get("message")
        row["diverged_epoch"] = r.diverged_epoch
        row["wall_time_s"] = r.wall_time_s
        if r.resumed is not None:  # (records from before it have no column, so their tables stay the same)
            row["resumed"] = r.resumed
        row["device"] = r.device
        row.update({k: v for k, v in (r.metrics or {}).items() if isinstance(v, (int, float)) or v is None})
        row["invalid"] = ";".join(invalid_values(r))
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=ID_COLUMNS)
    return table.sort_values("run_id", kind="stable").reset_index(drop=True)


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def setting_columns(table: pd.DataFrame) -> list[str]:
    """Columns that identify a setting: method, data set and every config column but the seed."""
    return ["dataset", "method"] + [c for c in table.columns if c.startswith(SETTING_PREFIXES)]


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per setting, over the seeds of its ``ok`` runs: ``<metric>_mean`` and ``<metric>_std`` of
    the valid values, ``<metric>_invalid`` (the runs whose value is invalid, left out) and ``n``."""
    ok = runs[runs["status"] == "ok"] if "status" in runs else runs
    if ok.empty:
        return pd.DataFrame(columns=["dataset", "method", "n"])
    keys = setting_columns(ok)
    present = [m for m in SUMMARY_METRICS if m in ok]
    flagged = (ok["invalid"] if "invalid" in ok else pd.Series("", index=ok.index)).fillna("").str.split(";")
    invalid = pd.DataFrame({m: flagged.map(lambda names, m=m: m in names) for m in present}, index=ok.index)
    valid = ok[keys].join(ok[present].mask(invalid))
    grouped = valid.groupby(keys, dropna=False, sort=True)
    stats = grouped[present].agg(["mean", "std"])
    counts = ok[keys].join(invalid).groupby(keys, dropna=False, sort=True)[present].sum()
    columns = {}
    for metric in present:
        columns[f"{metric}_mean"], columns[f"{metric}_std"] = stats[(metric, "mean")], stats[(metric, "std")]
        columns[f"{metric}_invalid"] = counts[metric].astype(int)
    out = pd.DataFrame(columns, index=stats.index)
    out["n"] = grouped.size()
    return out.reset_index()


def summary_markdown(summary: pd.DataFrame) -> str:
    """Markdown: data set, method, the hyperparameters swept for that method, the other settings
    that differ between rows, and AU / KL / MI / rec as mean ± std over seeds (n)."""
    if summary.empty or "au_mean" not in summary:
        return ""
    varying = [c for c in summary.columns if c.startswith(SETTING_PREFIXES[1:]) and summary[c].nunique(dropna=False) > 1]
    hp_columns = [c for c in summary.columns if c.startswith("hp.")]
    swept = {key: [c for c in hp_columns if group[c].nunique(dropna=True) > 1]
             for key, group in summary.groupby(["dataset", "method"])}
    lines = ["| " + " | ".join(["dataset", "method", "setting", *varying, "AU", "KL", "MI", "rec", "n"]) + " |"]
    lines.append("|" + "---|" * (len(varying) + 8))
    for _, row in summary.iterrows():
        setting = ", ".join(f"{c[3:]}={_cell_text(row[c])}" for c in swept[(row["dataset"], row["method"])])
        cells = [row["dataset"], row["method"], setting, *(_cell_text(row[c]) for c in varying)]
        cells += [_mean_std(row, m) for m in ("au", "kl", "mi", "rec")] + [int(row["n"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _cell_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _mean_std(row: pd.Series, metric: str) -> str:
    """``mean ± std`` of the valid values, and how many were invalid (left out)."""
    mean, std, invalid = row[f"{metric}_mean"], row[f"{metric}_std"], int(row[f"{metric}_invalid"])
    text = "invalid" if pd.isna(mean) and invalid else f"{mean:.3g}" + ("" if pd.isna(std) else f" ± {std:.2g}")
    return text + (f" ({invalid} invalid)" if invalid else "")
