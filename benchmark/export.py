"""``export --to tensorboard|mlflow RESULTS``: the run records as experiment-tracker runs.

Every record under ``RESULTS`` (a results folder: its grids' ``*/runs/*.json``; or one grid's
folder) becomes one tracker run: the resolved config as hyperparameters (flattened:
``train.lr``, ``hyperparameters.beta``, ``model.options.hidden``; lists and nulls as JSON text),
the per-epoch curves as scalars (``curves/KEY`` at step = epoch), the final metrics (``metrics/KEY``
in TensorBoard, ``KEY`` in MLflow, at the last epoch), and the record's PNG artifacts as images.

* TensorBoard: one event folder per run, ``OUT/GRID/RUN_ID/`` (default OUT: ``tensorboard/``),
  the hyperparameters also for the HParams tab.
* MLflow: a local file store (default OUT: ``mlruns/``; a tracking URI such as ``file:///...``
  or ``sqlite:///...`` is used as given), one experiment per grid, one run per record, tagged
  ``benchmark.run_id``; the record and its PNGs are the run's artifacts.

Exporting again is idempotent: a run whose record is unchanged (its SHA-256, kept beside the
export) is skipped, a changed record (a rerun) replaces its run, so each run id has one event
folder / one active MLflow run. The trackers are optional (``pip install
'vae-collapse-benchmark[tracking]'``); a missing one is a one-line error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import BenchmarkError

TRACKERS = ("tensorboard", "mlflow")
DEFAULT_OUT = {"tensorboard": "tensorboard", "mlflow": "mlruns"}
INSTALL = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny"}
MARKER = ".benchmark-export.json"  # beside a TensorBoard run's events: the record it was written from
RUN_ID_TAG, SHA_TAG, GRID_TAG = "benchmark.run_id", "benchmark.record_sha256", "benchmark.planning.grid"


@dataclass(frozen=True)
class Exported:
    """One record to export: its grid (the folder name), file, parsed JSON and SHA-256."""

    grid: str
    path: Path
    record: dict[str, Any]
    sha256: str

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    def artifacts(self) -> list[tuple[str, Path]]:
        """(name, file) of each PNG artifact the record lists and its folder holds."""
        out = []
        for name, filename in sorted((self.record.get("artifacts") or {}).items()):
            path = self.path.parent / str(filename)
            if path.suffix == ".png" and path.is_file():
                out.append((str(name), path))
        return out


def find_records(results: Path) -> tuple[list[Exported], list[str]]:
    """The records under ``results`` (a results folder or one grid's folder), and one line per
    file in a ``runs/`` folder that is no readable record (skipped)."""
    from .results.store import ResultStore

    if not results.is_dir():
        raise BenchmarkError(f"results folder {results} does not exist; give the folder `run` wrote "
                             "(e.g. results) or one grid's folder (e.g. results/quick)")
    folders = [results] if (results / "runs").is_dir() else sorted(d for d in results.iterdir() if (d / "runs").is_dir())
    found, skipped = [], []
    for folder in folders:
        store = ResultStore(folder.parent, folder.name)
        records, unreadable = store.scan()
        skipped += [f"{store.runs_dir / name}: {why}" for name, why in unreadable]
        for record in records:
            path = store.record_path(record.run_id)
            data = path.read_bytes()
            found.append(Exported(folder.name, path, json.loads(data), hashlib.sha256(data).hexdigest()))
    if not found:
        raise BenchmarkError(f"no run records under {results} (looked in {results}/runs/ and {results}/*/runs/); "
                             "give the folder `run` wrote (e.g. results) or one grid's folder")
    return found, skipped


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"a.b": scalar}``; lists, tables inside lists and nulls as JSON text."""
    if isinstance(value, dict) and (value or not prefix):
        out: dict[str, Any] = {}
        for key, item in sorted(value.items()):
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, (bool, int, float, str)):
        return {prefix: value}
    return {prefix: json.dumps(value, sort_keys=True)}


def numbers(values: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of ``values`` (booleans as 0 / 1), as floats."""
    out = {}
    for key, value in values.items():
        if isinstance(value, (bool, int, float)) and math.isfinite(float(value)):
            out[str(key)] = float(value)
    return out


def curve_points(record: dict[str, Any]) -> Iterator[tuple[int, str, float]]:
    """(epoch, key, value) of every number of the per-epoch curves."""
    for index, point in enumerate(record.get("curves") or []):
        step = int(point.get("epoch", index + 1))
        for key, value in numbers({k: v for k, v in point.items() if k != "epoch"}).items():
            yield step, key, value


def last_step(record: dict[str, Any]) -> int:
    steps = [step for step, _, _ in curve_points(record)]
    return max(steps) if steps else 0


def _millis(stamp: Any) -> int | None:
    try:
        return int(dt.datetime.fromisoformat(str(stamp)).timestamp() * 1000)
    except ValueError:
        return None


def png_size(path: Path) -> tuple[int, int, int]:
    """(height, width, channels) from a PNG's header."""
    head = path.read_bytes()[:26]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is no PNG file")
    width, height = struct.unpack(">II", head[16:24])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(head[25], 3)
    return height, width, channels


def _missing(tracker: str, exc: ImportError) -> BenchmarkError:
    return BenchmarkError(f"export --to {tracker} needs {INSTALL[tracker]}, which is not installed ({exc}): "
                          f"pip install {INSTALL[tracker]} (or pip install 'vae-collapse-benchmark[tracking]')")


# --- TensorBoard --------------------------------------------------------------------------------

def export_tensorboard(records: list[Exported], out: Path) -> dict[str, int]:
    try:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
    except ImportError as exc:
        raise _missing("tensorboard", exc) from None

    counts = {"written": 0, "replaced": 0, "unchanged": 0}
    for item in records:
        folder = out / item.grid / item.run_id
        marker = folder / MARKER
        if folder.exists():
            try:
                if json.loads(marker.read_text()).get("record_sha256") == item.sha256:
                    counts["unchanged"] += 1
                    continue
            except (OSError, ValueError):
                pass
            shutil.rmtree(folder)
            counts["replaced"] += 1
        else:
            counts["written"] += 1
        record, step = item.record, last_step(item.record)
        folder.mkdir(parents=True)
        writer = SummaryWriter(log_dir=str(folder))
        try:
            for epoch, key, value in curve_points(record):
                writer.add_scalar(f"curves/{key}", value, epoch)
            metrics = numbers(record.get("metrics") or {})
            for key, value in metrics.items():
                writer.add_scalar(f"metrics/{key}", value, step)
            config = flatten(record.get("config") or {})
            config.update({"run_id": item.run_id, "grid": item.grid, "status": str(record.get("status"))})
            for summary in hparams(config, {f"metrics/{k}": v for k, v in metrics.items()}):
                writer.file_writer.add_summary(summary)
            writer.add_text("config", "```\n" + json.dumps(record.get("config"), indent=1, sort_keys=True) + "\n```", step)
            writer.add_text("label", str(record.get("label", "")), step)
            for name, path in item.artifacts():
                height, width, channels = png_size(path)
                image = Summary.Image(height=height, width=width, colorspace=channels,
                                      encoded_image_string=path.read_bytes())
                writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=f"artifacts/{name}", image=image)]), step)
        finally:
            writer.close()
        marker.write_text(json.dumps({"run_id": item.run_id, "record": str(item.path),
                                      "record_sha256": item.sha256}, indent=1) + "\n")
    return counts


# --- MLflow -------------------------------------------------------------------------------------

def tracking_uri(out: str) -> str:
    """A tracking URI as given (``scheme:...``), else the folder as a ``file:`` URI."""
    if "://" in out or out.startswith("file:"):
        return out
    return Path(out).resolve().as_uri()


def export_mlflow(records: list[Exported], out: str) -> dict[str, int]:
    uri = tracking_uri(out)
    if uri.startswith("file:"):
        # MLflow 3 keeps the file store only on request; it is what this export writes
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise _missing("mlflow", exc) from None

    client = MlflowClient(tracking_uri=uri)
    experiments: dict[str, str] = {}
    counts = {"written": 0, "replaced": 0, "unchanged": 0}
    for item in records:
        if item.grid not in experiments:
            found = client.get_experiment_by_name(item.grid)
            experiments[item.grid] = found.experiment_id if found else client.create_experiment(item.grid)
        experiment = experiments[item.grid]
        existing = client.search_runs([experiment], filter_string=f"tags.`{RUN_ID_TAG}` = '{item.run_id}'")
        if existing and all(run.data.tags.get(SHA_TAG) == item.sha256 for run in existing) and len(existing) == 1:
            counts["unchanged"] += 1
            continue
        for run in existing:
            client.delete_run(run.info.run_id)
        counts["replaced" if existing else "written"] += 1
        record, step = item.record, last_step(item.record)
        started, finished = _millis(record.get("started_at")), _millis(record.get("finished_at"))
        stamp = finished or started or 0
        tags = {RUN_ID_TAG: item.run_id, SHA_TAG: item.sha256, GRID_TAG: item.grid,
                "benchmark.status": str(record.get("status")), "benchmark.method": str(record.get("config", {}).get("method"))}
        run = client.create_run(experiment, start_time=started, tags=tags, run_name=str(record.get("label") or item.run_id))
        run_id = run.info.run_id
        params = [Param(key, str(value)) for key, value in flatten(record.get("config") or {}).items()]
        metrics = [Metric(key, value, stamp, epoch) for epoch, key, value in curve_points(record)]
        metrics += [Metric(key, value, stamp, step) for key, value in numbers(record.get("metrics") or {}).items()]
        for start in range(0, max(len(params), len(metrics)), 100):
            client.log_batch(run_id, metrics=metrics[start:start + 100], params=params[start:start + 100],
                             tags=[RunTag(k, v) for k, v in tags.items()] if start == 0 else [])
        client.log_artifact(run_id, str(item.path))
        for _, path in item.artifacts():
            client.log_artifact(run_id, str(path), "artifacts")
        client.set_terminated(run_id, "FINISHED" if record.get("status") in ("ok", "diverged") else "FAILED",
                              end_time=finished)
    return counts


def export(tracker: str, results: Path, out: str | None) -> int:
    """Export the records under ``results`` to ``tracker`` at ``out``; prints what it did."""
    if tracker not in TRACKERS:
        raise BenchmarkError(f"unknown tracker {tracker!r}; valid: {', '.join(TRACKERS)}")
    target = out or DEFAULT_OUT[tracker]
    records, skipped = find_records(results)
    for line in skipped:
        print(f"warning: not a readable record, skipped: {line}", file=sys.stderr)
    if tracker == "tensorboard":
        if Path(target).exists() and not Path(target).is_dir():
            raise BenchmarkError(f"--out {target} is a file, not a folder; pass --out DIR")
        counts = export_tensorboard(records, Path(target))
        hint = f"view: tensorboard --logdir {target}"
    else:
        counts = export_mlflow(records, target)
        hint = f"view: mlflow ui --backend-store-uri {tracking_uri(target)}"
    grids = len({r.grid for r in records})
    print(f"exported {len(records)} records of {grids} grid(s) to {target} ({tracker}): {counts['written']} written, "
          f"{counts['replaced']} replaced (record changed), {counts['unchanged']} unchanged (skipped); {hint}",
          file=sys.stderr)
    return 0
