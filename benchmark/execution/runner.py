"""Runs: load their data, build their methods, train them (one run, or a pack of runs trained
as one stacked model), evaluate each, and return one record per run.

:func:`execute_pack` reads top to bottom: set up each run (:func:`setup_run`: data, seeds,
method, generators), build the trainer (:func:`make_trainer`), resume from a checkpoint
(:class:`Checkpoints`), train epoch by epoch (:func:`train_epoch`: the epoch, then each run's
curve point or divergence), then evaluate each run and fill its record (:func:`evaluate_run`).
Whether the runs train alone or stacked is the trainer's step (:mod:`benchmark.ml.train`), not
the loop's.

The runner reads and writes no file but the checkpoint it is handed (resuming from it when it
is the pack's own); which runs to execute, and which share a pack, is the executor's choice and
the store writes the records. Every random stream of a run is seeded from its run id
(:meth:`RunConfig.stream_seed`), so the same config gives the same numbers on the same CPU; a
run in a pack gets the sampling noise it gets alone (:mod:`benchmark.ml.pack`), so its numbers
match the run trained alone to float rounding. A pack that cannot train stacked (e.g.
:class:`benchmark.ml.pack.PackRefused`) fails every run in it, and the executor reruns each alone.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from ..config import RunConfig
from ..data.catalog import DATASETS, load_dataset
from ..data.splits import Dataset
from ..device import describe_device, resolve_device
from ..errors import DivergedError
from ..ml.archs import arch_kind
from ..ml.method import Method, build_method, validation_fraction
from ..ml.train import Trainer
from .checkpoint import SpentSoFar, load_checkpoint, save_checkpoint
from .checkpoint_every import CheckpointEvery
from ..evaluation.evaluate import CurvePoints, evaluate
from ..evaluation.lockstep import Lockstep
from ..planning.code_key import run_code
from ..results.provenance import environment
from ..results.record import Record, utc_now

Log = Callable[[str], None]


class RunResult(NamedTuple):
    """A run's ``record``, the image grids [N, C, H, W] in [0, 1] to store beside it and, when
    asked for, the trained model's state dict (on the CPU)."""

    record: Record
    images: dict[str, Tensor]
    model_state: dict[str, Any] | None = None


def failed_result(config: RunConfig, error_type: str, message: str, trace: str | None = None) -> RunResult:
    """The result of a run that died outside :func:`execute_pack` (e.g. its worker process was killed)."""
    record = Record.start(config, run_code(config))
    record.fail(error_type, message, trace)
    return RunResult(_finish(record, 0.0, "unknown"), {})


def execute_pack(configs: Sequence[RunConfig], *, device: str = "auto", data_root: str | None = None,
                 download: bool = False, log: Log = print, checkpoint: Path | None = None,
                 checkpoint_every: CheckpointEvery | int = 0, keep_model: bool = False) -> list[RunResult]:
    """Train ``configs`` (one run, or runs that differ only in their seed and their method's pack
    scalars, :func:`benchmark.ml.pack.pack_key`) together and evaluate each; one result per run,
    in order. Never raises for a failing run (status ``failed`` or ``diverged`` in its record; an
    error that stops the pack fails every run still in it), except KeyboardInterrupt, which
    leaves no record.

    With ``checkpoint`` and ``checkpoint_every`` (a :class:`CheckpointEvery`, or a number of epochs),
    the training state is saved there that often, and a pack finding a checkpoint of its own (the same runs, made
    by the same code) resumes from it (same numbers as an uninterrupted pack on CPU). Deleting
    the file is the caller's job. ``keep_model`` returns each trained state dict with its
    result. A record's times count every process that worked on it (``resumed``: how many times
    it resumed); a packed run's times are its share (1 / K) of the pack's, and its ``pack``
    field names the pack.
    """
    clock, records = Clock(), [start_record(configs, k) for k in range(len(configs))]
    results: dict[int, RunResult] = {}
    try:
        torch_device = resolve_device(device)
        for record in records:
            record.device = describe_device(torch_device)
        runs = [setup_run(k, config, record, torch_device, data_root, download)
                for k, (config, record) in enumerate(zip(configs, records))]
        trainer = make_trainer(runs) if len(runs) == 1 else make_pack_trainer(runs)
        every = checkpoint_every if isinstance(checkpoint_every, CheckpointEvery) else CheckpointEvery(checkpoint_every)
        checkpoints = Checkpoints(checkpoint, every, log)
        checkpoints.resume(trainer, runs, clock)
        points = curve_points if len(runs) == 1 else pack_curve_points
        while not trainer.done and training(runs):
            clock.train_s += train_epoch(trainer, runs, log, points)
            checkpoints.save_if_due(trainer, runs, clock)
        schedule = trainer.finish() if training(runs) else {}
        evaluate_runs = evaluate_alone if len(runs) == 1 else evaluate_pack
        results.update(evaluate_runs(training(runs), schedule, clock.train_s / len(runs), keep_model))
    except DivergedError as exc:  # raised by a method's own step (a run alone)
        for record in records:
            if record.status == "running":
                record.diverge(exc.epoch + 1, str(exc))
    except Exception as exc:  # a failing pack is recorded; the grid goes on
        for record in records:
            if record.status == "running":
                record.fail(type(exc).__name__, str(exc), traceback.format_exc())
    for record in records:
        _finish(record, clock.wall_s() / len(records), device)
    return [results.get(k, RunResult(record, {})) for k, record in enumerate(records)]


@dataclass
class Clock:
    """The time spent on a pack: by earlier processes (``before``, from its checkpoint), by this
    one since ``started`` (perf_counter), and in training (``train_s``, earlier processes' included)."""

    started: float = field(default_factory=time.perf_counter)
    before: SpentSoFar = SpentSoFar(0.0, 0.0, 0)
    train_s: float = 0.0

    def wall_s(self) -> float:
        """Wall seconds so far, every process included."""
        return self.before.wall_time_s + time.perf_counter() - self.started


@dataclass
class Run:
    """One run of a pack while it trains: what it trains on and with, and its random streams."""

    index: int  # in its pack
    config: RunConfig
    record: Record
    data: Dataset  # on the training device
    method: Method
    order: torch.Generator  # batch order (CPU)
    noise: torch.Generator  # its sampling noise in a pack (alone: the global RNG, seeded alike)
    curves: CurvePoints  # holds the curves' generator
    eval_generator: torch.Generator


def start_record(configs: Sequence[RunConfig], index: int) -> Record:
    """The record of run ``index`` of the pack ``configs`` (its ``pack`` field when K >= 2)."""
    return Record.start(configs[index], run_code(configs[index], packed=len(configs) > 1), [c.run_id for c in configs])


def setup_run(index: int, config: RunConfig, record: Record, device: torch.device, data_root: str | None,
              download: bool) -> Run:
    """Run ``index`` of its pack, ready to train: its data (``record.data`` says which), its method
    built after seeding the global RNG with its "init" seed, and its generators, each seeded
    from its run id (``record.seeds``)."""
    seeds = record.seeds
    data = load_dataset(config.dataset.name, data_root=data_root, seed=seeds["data"],
                        train_size=config.dataset.train_size, test_size=config.dataset.test_size,
                        device=device, download=download, float_train=False,
                        valid_fraction=validation_fraction(config.method, config.hyperparameters, config.model))
    torch.manual_seed(seeds["init"])
    method = build_method(config.method, config.hyperparameters, config.model, data.shape).to(device)
    order = torch.Generator().manual_seed(seeds["order"])
    curves = CurvePoints(config.eval, config.train.epochs, torch.Generator(device).manual_seed(seeds["curves"]))
    eval_generator = torch.Generator(device).manual_seed(seeds["eval"])
    noise = torch.Generator(device).manual_seed(seeds["train"])
    record.data = data.files.to_dict() if data.files is not None else None
    if data.valid is not None:
        where = "published" if DATASETS[config.dataset.name].valid_size else "held out from the training split"
        record.data = {**(record.data or {}), "valid": {"examples": len(data.valid), "source": where}}
    return Run(index, config, record, data, method, order, noise, curves, eval_generator)


def make_trainer(runs: Sequence[Run]) -> Trainer:
    """The trainer of ``runs``, with the global RNG seeded from run 0's "train" seed: a run alone
    draws its sampling noise from it, a packed run the same noise from its own generator
    (:class:`benchmark.ml.pack.NoiseTape`). Validation (``on_epoch_end``, the plateau schedule)
    is on each run's validation split, never the test split."""
    torch.manual_seed(runs[0].record.seeds["train"])
    held_outs = [run.data.valid.x if run.data.valid is not None else None for run in runs]
    lengths = runs[0].data.train.lengths if len(runs) == 1 else None  # sentences: length-bucketed batches
    return Trainer([run.method for run in runs], [run.data.train.x for run in runs], runs[0].config.train,
                   [run.order for run in runs], held_outs, [run.noise for run in runs], lengths)


def make_pack_trainer(runs: Sequence[Run]) -> Trainer:
    """The trainer of a pack (K >= 2 ``runs``): as :func:`make_trainer`, with each split the runs
    share held once on the device (:func:`share_equal_splits`). Only packs reach it
    (``benchmark.planning.code_key.PACKED_ONLY``): a change here leaves runs trained alone done."""
    share_equal_splits(runs)
    return make_trainer(runs)


def share_equal_splits(runs: Sequence[Run]) -> None:
    """Make the runs whose training, test or validation examples are equal (the same data set and
    subset, e.g. every seed of a full published split) hold one tensor of them, so the device
    keeps one copy per pack, not one per run (the trainer gathers each run's batches from it)."""
    for split in ("train", "test", "valid"):
        held: list[Tensor] = []
        for run in runs:
            data = getattr(run.data, split)
            if data is None:
                continue
            same = next((x for x in held if x is data.x or (x.shape == data.x.shape and x.dtype == data.x.dtype
                                                           and torch.equal(x, data.x))), None)
            if same is None:
                held.append(data.x)
            elif same is not data.x:
                run.data = dataclasses.replace(run.data, **{split: dataclasses.replace(data, x=same)})


def training(runs: Sequence[Run]) -> list[Run]:
    """The runs still training (neither failed nor diverged nor finished)."""
    return [run for run in runs if run.record.status == "running"]


def train_epoch(trainer: Trainer, runs: Sequence[Run], log: Log, points: CurvePointsOf | None = None) -> float:
    """One epoch of every run, then each training run's curve point on its test split (``points``:
    how they are taken, default :func:`curve_points`), or its divergence; returns the seconds the
    epoch took (curve points excluded)."""
    t0 = time.perf_counter()
    means = trainer.run_epoch()
    seconds = time.perf_counter() - t0
    live = []
    for run in training(runs):
        if means[run.index] is None:
            error = trainer.diverged[run.index]
            run.record.diverge(error.epoch + 1, str(error))
        else:
            live.append(run)
    for run, point in zip(live, (points or curve_points)(live, trainer.epoch, means)):
        run.record.curves.append(point)
        log(f"  {run.config.run_id} epoch {trainer.epoch}/{run.config.train.epochs} "
            + " ".join(f"{key}={v:.4g}" for key, v in point.items() if key != "epoch"))
    return seconds


CurvePointsOf = Callable[[Sequence[Run], int, Sequence[dict[str, float] | None]], list[dict[str, Any]]]


def curve_points(runs: Sequence[Run], epoch: int, means: Sequence[dict[str, float] | None]) -> list[dict[str, Any]]:
    """The curve point of ``epoch`` of each of ``runs`` (``means[run.index]``: its training means),
    one run after another."""
    return [run.curves.point(run.method, run.data.test.x, epoch, means[run.index]) for run in runs]


def pack_curve_points(runs: Sequence[Run], epoch: int, means: Sequence[dict[str, float] | None]) -> list[dict[str, Any]]:
    """:func:`curve_points` of a pack's runs: on a GPU all at once in lockstep, their model passes
    batched (as :func:`evaluate_pack`), elsewhere one after another. Only packs reach it
    (``benchmark.planning.code_key.PACKED_ONLY``)."""
    if len(runs) < 2 or not lockstep_pays(runs[0].data.test.x.device):
        return curve_points(runs, epoch, means)
    lockstep = Lockstep([run.method.model for run in runs])
    return lockstep.run([functools.partial(run.curves.point, lockstep.method(k, run.method), run.data.test.x, epoch,
                                           means[run.index]) for k, run in enumerate(runs)])


def evaluate_alone(runs: Sequence[Run], schedule: dict[str, Any], train_time_s: float,
                   keep_model: bool) -> dict[int, RunResult]:
    """:func:`evaluate_run` of a run alone (``runs``: it, or none when it failed): index -> result."""
    return {run.index: evaluate_run(run, schedule, train_time_s, keep_model) for run in runs}


def evaluate_pack(runs: Sequence[Run], schedule: dict[str, Any], train_time_s: float,
                  keep_model: bool) -> dict[int, RunResult]:
    """:func:`evaluate_run` of each run of a pack still training: on a GPU all at once in lockstep
    (:mod:`benchmark.evaluation.lockstep`: each run's own evaluation on its own thread, their
    model passes made as one batched call; each record's ``eval_time_s`` is its share, 1 / K, of
    the pack's), elsewhere one after another (:func:`lockstep_pays`). Only packs reach it
    (``benchmark.planning.code_key.PACKED_ONLY``)."""
    if not runs or not lockstep_pays(runs[0].data.test.x.device):
        return {run.index: evaluate_run(run, schedule, train_time_s, keep_model) for run in runs}
    t0 = time.perf_counter()
    lockstep = Lockstep([run.method.model for run in runs])
    views = [dataclasses.replace(run, method=lockstep.method(k, run.method)) for k, run in enumerate(runs)]
    results = lockstep.run([functools.partial(evaluate_run, view, schedule, train_time_s, keep_model)
                            for view in views])
    share = (time.perf_counter() - t0) / len(runs)
    for result in results:
        result.record.eval_time_s = share
    return {run.index: result for run, result in zip(runs, results)}


def lockstep_pays(device: torch.device) -> bool:
    """Whether a pack on ``device`` is evaluated in lockstep: on a GPU (its model passes are
    launch-bound: one call for the pack instead of K). On a CPU the batched passes cost what K
    passes cost and the threads add to it: 0.7-0.9x the speed of one after another
    (docs/performance.md, "Packed evaluation")."""
    return device.type == "cuda"


def evaluate_run(run: Run, schedule: dict[str, Any], train_time_s: float, keep_model: bool) -> RunResult:
    """Evaluate the trained ``run`` on its test split and fill its record (metrics, the curves'
    last MI, the method's extras and the validation ``schedule``; status ``ok``), or fail it
    alone when its evaluation raises. Its images, and with ``keep_model`` its state dict (CPU),
    come with the result."""
    record, config, method = run.record, run.config, run.method
    record.train_time_s = train_time_s
    t_eval = time.perf_counter()
    images: dict[str, Tensor] = {}
    state = None
    try:
        evaluation = evaluate(method, run.data.test, config.eval, run.eval_generator,
                              mi_x=run.data.train.x if config.eval.mi_split == "train" else None,
                              kind=arch_kind(config.model), vocabulary=run.data.vocabulary)
        record.metrics, record.estimators, record.vectors = evaluation.metrics, evaluation.estimators, evaluation.vectors
        record.per_class, record.noise = evaluation.per_class, evaluation.noise
        record.invalid = evaluation.invalid or None
        record.texts = evaluation.texts
        run.curves.final_mi(record.curves, evaluation)
        record.method_extras = {**method.record_extras(), **({"validation": schedule} if schedule else {})}
        record.status = "ok"
        images = evaluation.images
        if keep_model:
            state = {key: v.detach().cpu() for key, v in method.state_dict().items()}
    except Exception as exc:  # one run's evaluation failing leaves the others
        record.fail(type(exc).__name__, str(exc), traceback.format_exc())
    record.eval_time_s = time.perf_counter() - t_eval
    return RunResult(record, images, state)


@dataclass
class Checkpoints:
    """A pack's checkpoint at ``path`` (None: none), saved as often as ``every`` says."""

    path: Path | None
    every: CheckpointEvery
    log: Log
    last_save: float = field(default_factory=time.perf_counter)  # or the pack's start

    def resume(self, trainer: Trainer, runs: Sequence[Run], clock: Clock) -> None:
        """Restore the pack's own checkpoint, if there is one made by this code: the trainer, the
        curves' generators and points, the time spent before (into ``clock``), ``resumed``."""
        if self.path is None or not self.path.exists():
            return
        restored = load_checkpoint(self.path, trainer, _generators(runs), [run.record for run in runs])
        if restored is None:
            self.log(f"  {_name(runs)}: checkpoint {self.path} was made by other code: starting afresh")
            return
        clock.before, clock.train_s = restored, restored.train_time_s
        for run in runs:
            run.record.resumed = restored.resumed + 1
        self.log(f"  {_name(runs)} resumed from {self.path} after epoch {trainer.epoch}")

    def save_if_due(self, trainer: Trainer, runs: Sequence[Run], clock: Clock) -> None:
        """Save when :attr:`every` says so, while some run trains and epochs remain."""
        if self.path is None or trainer.done or not training(runs) \
                or not self.every.due(trainer.epoch, time.perf_counter() - self.last_save):
            return
        self.last_save = time.perf_counter()
        save_checkpoint(self.path, trainer, _generators(runs), [run.record for run in runs],
                        SpentSoFar(clock.train_s, clock.wall_s(), runs[0].record.resumed))


def _generators(runs: Sequence[Run]) -> list[dict[str, torch.Generator]]:
    """Each run's generators a checkpoint keeps (the curves'; the others are not used yet)."""
    return [{"curves": run.curves.generator} for run in runs]


def _finish(record: Record, wall_s: float, device: str) -> Record:
    """Stamp the end of the run: its wall time (its share of the pack's), time, environment."""
    record.wall_time_s = wall_s
    record.finished_at = utc_now()
    record.device = record.device or device
    record.environment = environment()
    return record


def _name(runs: Sequence[Run]) -> str:
    return runs[0].config.run_id if len(runs) == 1 else f"pack of {len(runs)} ({runs[0].config.run_id}, ...)"
