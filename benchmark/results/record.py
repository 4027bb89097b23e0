"""A run's record: the typed, versioned content of ``<results>/<grid>/runs/<run_id>.json``.

The runner fills a :class:`Record`, the executor adds the attempt and the grid, and the store
writes it (:meth:`Record.to_json`) and reads it back (:func:`parse_record`); the report reads
records through the store. On disk a record is one JSON object with sorted keys, strict JSON
(non-finite floats become null). Fields marked optional are left out while they are None (a
run that ended early has no timings, a record of an older version no ``code``), and keys this
version does not know are kept in :attr:`Record.extra` and written back unchanged, so a record
read and written again keeps its shape. Metric definitions: docs/metrics.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from ..config import STREAMS, RunConfig

# 2: `code` (the code version behind the numbers), host CPU in `environment`; 3: `data` (the files the
# data came from) and `resumed`, times that count every process that worked on a resumed run;
# 4: `pack` (the runs trained together with this one, when it was packed); 5: `code` covers the core
# (`key` and the digest of every definition the numbers depend on, `units`; no `numerics_version`)
RECORD_VERSION = 5
RunState = Literal["done", "stale", "todo"]


def _optional() -> Any:
    return field(default=None, metadata={"optional": True})


@dataclass
class Record:
    """One run: its config and identity, how it ended, its numbers and where they came from."""

    run_id: str
    config: dict[str, Any]  # RunConfig.to_dict(): the resolved config the run id hashes
    label: str = ""  # RunConfig.label(), e.g. "beta-vae(beta=0.2) fashion-mnist seed 0"
    status: str = "running"  # running | ok | failed | diverged
    error: dict[str, Any] | None = None  # {"type", "message", "traceback"} of a failed or diverged run
    diverged_epoch: int | None = None  # 1-based epoch whose loss was not finite
    metrics: dict[str, Any] = field(default_factory=dict)  # end-of-run scalars
    vectors: dict[str, Any] = field(default_factory=dict)  # per latent dimension: au_variances, kl_per_dim
    estimators: dict[str, Any] = field(default_factory=dict)  # every setting behind the metrics
    curves: list[dict[str, Any]] = field(default_factory=list)  # per epoch: loss parts, test AU / KL (/ MI)
    method_extras: dict[str, Any] = field(default_factory=dict)  # Method.record_extras()
    seeds: dict[str, int] = field(default_factory=dict)  # seed of each random stream (config.STREAMS)
    record_version: int = RECORD_VERSION
    code: dict[str, Any] | None = _optional()  # run.code_key.run_code: key, units (definition -> digest)
    started_at: str | None = _optional()  # UTC, ISO 8601
    finished_at: str | None = _optional()
    device: str | None = _optional()  # e.g. "cpu (2 threads)", "cuda:0 (NVIDIA H100 80GB HBM3)"
    # Times (seconds) sum every process that worked on the run (a resumed run: each process up to
    # the checkpoint the next one resumed from, then the last one).
    train_time_s: float | None = _optional()  # training epochs only
    eval_time_s: float | None = _optional()  # the final evaluation
    wall_time_s: float | None = _optional()  # the whole run, loading included
    resumed: int | None = _optional()  # times the run resumed from a checkpoint (0: ran in one go)
    # A packed run (run --pack): {"size": K, "index": k, "run_ids": [...]}; its times are 1 / K of the pack's
    pack: dict[str, Any] | None = _optional()
    data: dict[str, Any] | None = _optional()  # data.files.DataFiles.to_dict(): kind, files (path, size, sha256)
    per_class: dict[str, Any] | None = _optional()  # {"au": {label: fraction}, "kl": {label: nats}}
    noise: dict[str, Any] | None = _optional()  # noise sensitivity: variances, distance, diversity
    # metric -> why its estimator's own checks reject the value (run.evaluate.invalid_metrics); such
    # values stay in `metrics` and are left out of means and tests
    invalid: dict[str, str] | None = _optional()
    texts: dict[str, list[str]] | None = _optional()  # text runs: greedy decodings (reconstructions, samples)
    environment: dict[str, Any] | None = _optional()  # run.provenance.environment()
    attempt: int | None = _optional()  # 1 for the first try of a run
    grid: str | None = _optional()  # the grid (results folder) it was run for
    artifacts: dict[str, str] | None = _optional()  # image name -> PNG file beside the record
    extra: dict[str, Any] = field(default_factory=dict, metadata={"extra": True})  # unknown keys, kept as read

    @classmethod
    def start(cls, config: RunConfig, code: dict[str, Any], pack: Sequence[str] | None = None) -> Record:
        """The record of a run of ``config`` that starts now, made by ``code``; ``pack``: the run ids
        of the pack it trains in, itself included (a list of one: alone), for a run about to train
        (``resumed`` 0; the ``pack`` field when it holds two or more)."""
        record = cls(run_id=config.run_id, config=config.to_dict(), label=config.label(),
                     seeds={s: config.stream_seed(s) for s in STREAMS}, code=code, started_at=utc_now())
        if pack is not None:
            record.resumed = 0
            if len(pack) > 1:
                record.pack = {"size": len(pack), "index": list(pack).index(config.run_id), "run_ids": list(pack)}
        return record

    def fail(self, error_type: str, message: str, traceback: str | None) -> None:
        self.status = "failed"
        self.error = {"type": error_type, "message": message, "traceback": traceback}

    def diverge(self, epoch: int, message: str) -> None:
        """``epoch``: the 1-based epoch whose loss was not finite."""
        self.status, self.diverged_epoch = "diverged", epoch
        self.error = {"type": "DivergedError", "message": message, "traceback": None}

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: every field (optional ones only when set), then the unknown keys."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not f.metadata.get("extra") and not (value is None and f.metadata.get("optional")):
                out[f.name] = value
        return {**self.extra, **out}

    def to_json(self) -> str:
        return json.dumps(_jsonable(self.to_dict()), indent=1, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """A record from its JSON object; raises KeyError / TypeError / AttributeError when it
        lacks what the tables need (run id, status, config sections)."""
        _check(data)
        names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("extra")}
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names})


def run_state(record: Record | None, code_key: str, keep_stale: bool = False) -> RunState:
    """``done``: an ``ok`` record made by the current code (``code_key``, see
    :func:`benchmark.planning.code_key.run_code`); ``stale``: an ``ok`` record made by other code
    (done too when ``keep_stale``); ``todo``: no record, or a failed / diverged one."""
    if record is None or record.status != "ok":
        return "todo"
    if (record.code or {}).get("key") == code_key or keep_stale:
        return "done"
    return "stale"


def parse_record(text: str) -> Record:
    """The record in ``text`` (a record file's content); raises ValueError (not JSON, not an
    object) or what :meth:`Record.from_dict` raises."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return Record.from_dict(data)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _check(data: dict[str, Any]) -> None:
    """Check what every reader relies on (the tables group and average these), in the order the
    runs table reads it; raises KeyError, TypeError or AttributeError."""
    config = data["config"]
    for name, value, kinds in (("run_id", data["run_id"], str), ("status", data["status"], str),
                               ("config.method", config["method"], str),
                               ("config.dataset.name", config["dataset"]["name"], str),
                               ("config.seed", config["seed"], int)):
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise TypeError(f"{name} is {value!r}, not a {kinds.__name__}")
    config["hyperparameters"].items()
    for section in ("model", "train", "dataset", "eval"):
        for key, value in config[section].items():
            if key == "options":
                value.items()
    (data.get("error") or {}).get("message")
    (data.get("metrics") or {}).items()
    for name in ("wall_time_s", "train_time_s", "eval_time_s", "diverged_epoch", "resumed"):
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"{name} is {value!r}, not a number")
    if not isinstance(data.get("device"), (str, type(None))):
        raise TypeError(f"device is {data['device']!r}, not a string")


def _jsonable(value: Any) -> Any:
    """Non-finite floats become null so every record is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
