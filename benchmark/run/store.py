"""Run records on disk: one JSON file per run, written atomically, and the table built from them.

Layout: ``<results>/<grid>/runs/<run_id>.json`` and ``<results>/<grid>/runs.csv``. The table is
always rebuilt from the records, so the two can never disagree.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import pandas as pd

if TYPE_CHECKING:
    from torch import Tensor

RECORD_VERSION = 2  # 2: `code` (the code version behind the numbers), host CPU in `environment`
ID_COLUMNS = ["run_id", "status", "method", "dataset", "seed"]
SUMMARY_METRICS = ["au", "au_count", "kl", "mi", "nll", "rec", "neg_elbo", "mse", "wall_time_s"]
SETTING_PREFIXES = ("hp.", "model.", "train.", "dataset.", "eval.")


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Create ``path`` whole or not at all: ``write`` fills a temporary file in the same folder
    (a hidden name), which is then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, flushed to disk."""
    def write(tmp: Path) -> None:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (checkpoints, kept models)."""
    import torch  # not at module level: the report reads records without torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _jsonable(value: Any) -> Any:
    """Non-finite floats become null so every record is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class ResultStore:
    """The results of one grid: ``root / grid``."""

    def __init__(self, root: str | Path, grid: str):
        self.dir = Path(root) / grid
        self.runs_dir = self.dir / "runs"

    def record_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

    def write(self, record: dict[str, Any], images: dict[str, Tensor] | None = None) -> Path:
        """Write the image grids (``<run_id>.<name>.png``, listed in ``record["artifacts"]``),
        then the record: a record on disk always has its images."""
        from ..ml.images import save_image_grid

        record["artifacts"] = {}
        for name, batch in sorted((images or {}).items()):
            filename = f"{record['run_id']}.{name}.png"
            atomic_write(self.runs_dir / filename, lambda tmp: save_image_grid(batch.detach().cpu(), tmp, nrow=8))
            record["artifacts"][name] = filename
        path = self.record_path(record["run_id"])
        atomic_write_text(path, json.dumps(_jsonable(record), indent=1, sort_keys=True, allow_nan=False) + "\n")
        return path

    def checkpoint_path(self, run_id: str) -> Path:
        return self.dir / "checkpoints" / f"{run_id}.pt"

    def remove_checkpoint(self, run_id: str) -> None:
        """Delete a run's checkpoint and any temporary file a killed writer left beside it."""
        path = self.checkpoint_path(run_id)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    def model_path(self, run_id: str) -> Path:
        return self.dir / "models" / f"{run_id}.pt"

    def try_lock(self, run_id: str) -> "RunLock | None":
        """Claim ``run_id`` for this process, or None when another process holds it. The OS
        releases the claim when the process dies, however it dies."""
        return RunLock.acquire(self.dir / "locks" / f"{run_id}.lock")

    def read(self, run_id: str) -> dict[str, Any] | None:
        path = self.record_path(run_id)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # unreadable (e.g. hand-edited): treated as missing, so it is rerun

    def status(self, run_id: str) -> str | None:
        record = self.read(run_id)
        return None if record is None else record.get("status")

    def superseded_dir(self) -> Path:
        return self.dir / "superseded"

    def supersede(self, run_id: str) -> Path | None:
        """Move run ``run_id``'s record and its images out of ``runs/`` into ``superseded/``, named
        by the code version that made them (``<run_id>.<code key>.json``); never deletes. Returns
        the moved record's path (None when there is no record)."""
        record = self.read(run_id)
        if record is None:
            return None
        key = (record.get("code") or {}).get("key") or "unversioned"
        folder = self.superseded_dir()
        folder.mkdir(parents=True, exist_ok=True)
        artifacts = {}
        for name, filename in sorted((record.get("artifacts") or {}).items()):
            source = self.runs_dir / filename
            if source.exists():
                artifacts[name] = f"{run_id}.{key}.{name}{source.suffix}"
                os.replace(source, folder / artifacts[name])
        record["artifacts"] = artifacts
        path = folder / f"{run_id}.{key}.json"
        atomic_write_text(path, json.dumps(_jsonable(record), indent=1, sort_keys=True, allow_nan=False) + "\n")
        self.record_path(run_id).unlink()
        return path

    def records(self) -> list[dict[str, Any]]:
        found = (self.read(p.stem) for p in sorted(self.runs_dir.glob("*.json")))
        return [r for r in found if r is not None]

    def write_table(self) -> Path:
        """Rebuild ``runs.csv`` (one row per run) and ``summary.csv`` (mean, std and count over
        seeds per setting) from every record, under a lock shared by concurrent ``run`` commands."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".table.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            table = records_table(self.records())
            atomic_write_text(self.dir / "summary.csv", summary_table(table).to_csv(index=False, float_format="%.6g"))
            path = self.dir / "runs.csv"
            atomic_write_text(path, table.to_csv(index=False, float_format="%.6g"))
        return path

    def summary_markdown(self) -> str:
        """The summary as a Markdown table of the settings that vary (empty without ok runs)."""
        return summary_markdown(summary_table(records_table(self.records())))


class RunLock:
    """An exclusive ``flock`` on a lock file, held until :meth:`release` or process exit."""

    def __init__(self, handle: Any):
        self._handle = handle

    @classmethod
    def acquire(cls, path: Path) -> "RunLock | None":
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return cls(handle)

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def records_table(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per record: ids, every hyperparameter (``hp.*``), model / train / data settings,
    status details and every scalar metric."""
    rows = []
    for r in records:
        config = r["config"]
        row: dict[str, Any] = {"run_id": r["run_id"], "status": r["status"], "method": config["method"],
                               "dataset": config["dataset"]["name"], "seed": config["seed"]}
        row.update({f"hp.{k}": _cell(v) for k, v in config["hyperparameters"].items()})
        for section in ("model", "train", "dataset", "eval"):
            for key, value in config[section].items():
                if key == "options":
                    row.update({f"model.{k}": _cell(v) for k, v in value.items()})
                elif key != "name":
                    row[f"{section}.{key}"] = _cell(value)
        row["error"] = (r.get("error") or {}).get("message")
        row["diverged_epoch"] = r.get("diverged_epoch")
        row["wall_time_s"] = r.get("wall_time_s")
        row["device"] = r.get("device")
        row.update({k: v for k, v in (r.get("metrics") or {}).items() if isinstance(v, (int, float)) or v is None})
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
    """Per setting, over the seeds of its ``ok`` runs: ``<metric>_mean``, ``<metric>_std`` and ``n``."""
    ok = runs[runs["status"] == "ok"] if "status" in runs else runs
    if ok.empty:
        return pd.DataFrame(columns=["dataset", "method", "n"])
    keys = setting_columns(ok)
    present = [m for m in SUMMARY_METRICS if m in ok]
    grouped = ok.groupby(keys, dropna=False, sort=True)
    stats = grouped[present].agg(["mean", "std"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    stats["n"] = grouped.size()
    return stats.reset_index()


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
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    return f"{mean:.3g}" + ("" if pd.isna(std) else f" ± {std:.2g}")
