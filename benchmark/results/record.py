"""A run's record: the typed, versioned content of ``<results>/<grid>/runs/<run_id>.json``.

The runner fills a :class:`Record`, the executor adds the attempt and the grid, and the store
writes it (:meth:`Record.to_json`) and reads it back (:func:`parse_record`, the one place a
record file is parsed and checked: a malformed one is a :class:`RecordError` naming the file and
the field); the report reads records through the store. On disk a record is one JSON object with
sorted keys, strict JSON (non-finite floats become null). Fields marked optional are left out
while they are None (a run that ended early has no timings, a record of an older version no
``code``), and keys this version does not know are kept in :attr:`Record.extra` and written back
unchanged, so a record read and written again keeps its shape, byte for byte: its config is a
:class:`~benchmark.config.RunConfig` whose settings the file lacks (added after it was written)
are read as their defaults and left out again when it is written (:class:`TypedConfig`).
Metric definitions: docs/metrics.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, NamedTuple, Sequence, TypeVar

from ..config import STREAMS, DatasetConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig

# 2: `code` (the code version behind the numbers), host CPU in `environment`; 3: `data` (the files the
# data came from) and `resumed`, times that count every process that worked on a resumed run;
# 4: `pack` (the runs trained together with this one, when it was packed); 5: `code` covers the core
# (`key` and the digest of every definition the numbers depend on, `units`; no `numerics_version`)
RECORD_VERSION = 5
RunState = Literal["done", "stale", "todo"]


SECTIONS = {"dataset": DatasetConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}


T = TypeVar("T")


class RecordError(ValueError):
    """A record (or plan) file that is not one: ``<file>: <field>: <what is wrong>``; ``problem``
    without the file (for lists that name it already)."""

    def __init__(self, problem: str, source: str | None = None):
        super().__init__(f"{source}: {problem}" if source else problem)
        self.problem, self.source = problem, source


def _optional() -> Any:
    return field(default=None, metadata={"optional": True})


@dataclass(frozen=True)
class RunError:
    """Why a run failed or diverged."""

    type: str  # the exception's class name, "DivergedError" for a diverged run
    message: str
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}


@dataclass(frozen=True)
class Pack:
    """The pack a run trained in (``run --pack``): its times are 1 / ``size`` of the pack's."""

    size: int
    index: int  # this run's place in ``run_ids``
    run_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "index": self.index, "run_ids": list(self.run_ids)}


@dataclass(frozen=True)
class TypedConfig:
    """A config read from a file: the :class:`RunConfig` and the settings the file left out
    (``"train.select_best"``: added after it was written, read as their defaults), so that
    :meth:`to_dict` gives back the object that was read."""

    config: RunConfig
    absent: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """``config.to_dict()`` without the absent settings still at their defaults."""
        data = self.config.to_dict()
        for name in self.absent:
            section, key = name.split(".", 1)
            if data[section][key] == getattr(SECTIONS[section](), key):
                del data[section][key]
        return data

    @classmethod
    def parse(cls, data: Any, where: str = "config") -> TypedConfig:
        """The config in ``data`` (a record's or planned run's ``config``); a :class:`RecordError`
        naming the field (``where.<section>.<key>``) when it is none."""
        expect(data, dict, where)
        missing = sorted({"dataset", "method", "hyperparameters", "seed", *SECTIONS} - set(data))
        unknown = sorted(set(data) - {"dataset", "method", "hyperparameters", "seed", *SECTIONS})
        if missing or unknown:
            raise RecordError(f"{where}.{(missing or unknown)[0]}: {'missing' if missing else 'not a config field'}")
        expect(data["method"], str, f"{where}.method")
        expect(data["seed"], int, f"{where}.seed")
        expect(data["hyperparameters"], dict, f"{where}.hyperparameters")
        expect(data["dataset"], dict, f"{where}.dataset")
        expect(data["dataset"].get("name"), str, f"{where}.dataset.name")
        absent: list[str] = []
        for section, kind in SECTIONS.items():
            values = expect(data[section], dict, f"{where}.{section}")
            names = {f.name for f in dataclasses.fields(kind)}
            for key in values:
                if key not in names:
                    raise RecordError(f"{where}.{section}.{key}: not a {section} setting (valid: {', '.join(sorted(names))})")
            absent += [f"{section}.{name}" for name in sorted(names - set(values))]
        expect(data["model"].get("options", {}), dict, f"{where}.model.options")
        return cls(RunConfig.from_dict(data), tuple(absent))


@dataclass
class Record:
    """One run: its config and identity, how it ended, its numbers and where they came from."""

    run_id: str
    config: RunConfig  # the resolved config the run id hashes
    label: str = ""  # RunConfig.label(), e.g. "beta-vae(beta=0.2) fashion-mnist seed 0"
    status: str = "running"  # running | ok | failed | diverged
    error: RunError | None = None  # of a failed or diverged run
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
    pack: Pack | None = _optional()  # a packed run (run --pack)
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
    # the config settings the file left out (TypedConfig.absent), left out again when written
    config_absent: tuple[str, ...] = field(default=(), compare=False, repr=False, metadata={"extra": True})

    @classmethod
    def start(cls, config: RunConfig, code: dict[str, Any], pack: Sequence[str] | None = None) -> Record:
        """The record of a run of ``config`` that starts now, made by ``code``; ``pack``: the run ids
        of the pack it trains in, itself included (a list of one: alone), for a run about to train
        (``resumed`` 0; the ``pack`` field when it holds two or more)."""
        record = cls(run_id=config.run_id, config=config, label=config.label(),
                     seeds={s: config.stream_seed(s) for s in STREAMS}, code=code, started_at=utc_now())
        if pack is not None:
            record.resumed = 0
            if len(pack) > 1:
                record.pack = Pack(len(pack), list(pack).index(config.run_id), tuple(pack))
        return record

    def fail(self, error_type: str, message: str, traceback: str | None) -> None:
        self.status = "failed"
        self.error = RunError(error_type, message, traceback)

    def diverge(self, epoch: int, message: str) -> None:
        """``epoch``: the 1-based epoch whose loss was not finite."""
        self.status, self.diverged_epoch = "diverged", epoch
        self.error = RunError("DivergedError", message, None)

    def config_dict(self) -> dict[str, Any]:
        """The ``config`` object as written: the settings the file it was read from lacked left out."""
        return TypedConfig(self.config, self.config_absent).to_dict()

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: every field (optional ones only when set), then the unknown keys."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not f.metadata.get("extra") and not (value is None and f.metadata.get("optional")):
                out[f.name] = value.to_dict() if isinstance(value, (RunError, Pack)) else value
        out["config"] = self.config_dict()
        return {**self.extra, **out}

    def to_json(self) -> str:
        return json.dumps(_jsonable(self.to_dict()), indent=1, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Record:
        """A record from its JSON object; a :class:`RecordError` naming the field when it is none
        (lacks what the tables need, or a field of the wrong kind)."""
        if not isinstance(data, dict):
            raise RecordError("not a JSON object")
        for name in ("run_id", "status", "config"):
            if name not in data:
                raise RecordError(f"{name}: missing")
        expect(data["run_id"], str, "run_id")
        expect(data["status"], str, "status")
        config = TypedConfig.parse(data["config"])
        for name in ("wall_time_s", "train_time_s", "eval_time_s", "diverged_epoch", "resumed"):
            expect(data.get(name), (int, float, type(None)), name)
        expect(data.get("device"), (str, type(None)), "device")
        expect(data.get("metrics", {}), dict, "metrics")
        names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("extra")}
        fields = {k: v for k, v in data.items() if k in names}
        fields.update(config=config.config, error=_error(data.get("error")), pack=_pack(data.get("pack")))
        return cls(**fields, extra={k: v for k, v in data.items() if k not in names}, config_absent=config.absent)


def _error(data: Any) -> RunError | None:
    if data is None:
        return None
    expect(data, dict, "error")
    if set(data) != {"type", "message", "traceback"}:
        raise RecordError(f"error: has {sorted(data)}, not type, message and traceback")
    return RunError(expect(data["type"], str, "error.type"), expect(data["message"], str, "error.message"),
                    expect(data["traceback"], (str, type(None)), "error.traceback"))


def _pack(data: Any) -> Pack | None:
    if data is None:
        return None
    expect(data, dict, "pack")
    if set(data) != {"size", "index", "run_ids"}:
        raise RecordError(f"pack: has {sorted(data)}, not size, index and run_ids")
    run_ids = expect(data["run_ids"], list, "pack.run_ids")
    if not all(isinstance(r, str) for r in run_ids):
        raise RecordError(f"pack.run_ids: {run_ids!r} is not a list of run ids")
    return Pack(expect(data["size"], int, "pack.size"), expect(data["index"], int, "pack.index"),
                tuple(run_ids))


def expect(value: Any, kinds: type | tuple[type, ...], where: str) -> Any:
    """``value`` when it is one of ``kinds`` (a bool is no number), else a :class:`RecordError`."""
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,))):
        names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)) if k is not type(None))
        raise RecordError(f"{where}: {value!r} is not {'an' if names[0] in 'aeiou' else 'a'} {names}")
    return value


class RunKeys(NamedTuple):
    """The key of a run's current code (:func:`benchmark.planning.code_key.run_code`) trained alone
    and trained in a pack: a pack runs code a run alone never does."""

    alone: str
    packed: str

    def of(self, record: Record) -> str:
        """The key ``record``'s run would have today, trained as it was."""
        return self.packed if record.pack is not None else self.alone


def run_state(record: Record | None, keys: RunKeys, keep_stale: bool = False) -> RunState:
    """``done``: an ``ok`` record made by the current code (``keys``, the one for how it trained);
    ``stale``: an ``ok`` record made by other code (done too when ``keep_stale``); ``todo``: no
    record, or a failed / diverged one."""
    if record is None or record.status != "ok":
        return "todo"
    if (record.code or {}).get("key") == keys.of(record) or keep_stale:
        return "done"
    return "stale"


def parse_json(text: str, source: str, parse: Callable[[Any], T]) -> T:
    """``parse`` of the JSON in ``text``, the content of file ``source``; a :class:`RecordError`
    naming ``source`` when it is not JSON or ``parse`` raises one."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RecordError(f"not JSON ({exc})", source) from None
    try:
        return parse(data)
    except RecordError as exc:
        raise RecordError(exc.problem, source) from None


def parse_record(text: str, source: str = "record") -> Record:
    """The record in ``text``, the content of file ``source``: a :class:`RecordError` naming
    ``source`` and the field when it is none (not JSON, not an object, a field missing or wrong)."""
    return parse_json(text, source, Record.from_dict)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    """Non-finite floats become null so every record is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
