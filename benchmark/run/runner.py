"""Runs: load their data, build their methods, train them (one run, or a pack of runs trained
as one stacked model), evaluate each, and return one record per run.

The runner reads and writes no file but the checkpoint it is handed (resuming from it when it
is the pack's own); which runs to execute, and which share a pack, is the executor's choice and
the store writes the records. Every random stream of a run is seeded from its run id
(:meth:`RunConfig.stream_seed`), so the same config gives the same numbers on the same CPU; a
run in a pack gets the sampling noise it gets alone (:mod:`benchmark.ml.pack`), so its numbers
match the run trained alone to float rounding.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from ..config import RunConfig
from ..data.catalog import DATASETS, load_dataset
from ..device import describe_device, resolve_device
from ..errors import DivergedError
from ..ml.archs import arch_kind
from ..ml.method import build_method, validation_fraction
from ..ml.train import PackTrainer
from .checkpoint import SpentSoFar, load_checkpoint, save_checkpoint
from .evaluate import CurvePoints, Evaluation, evaluate
from .code_key import run_code
from .provenance import environment
from .record import Record, utc_now

Log = Callable[[str], None]


class RunResult(NamedTuple):
    """A run's ``record``, the image grids [N, C, H, W] in [0, 1] to store beside it and, when
    asked for, the trained model's state dict (on the CPU)."""

    record: Record
    images: dict[str, Tensor]
    model_state: dict[str, Any] | None = None


def _finish(record: Record, started: float, device: str, before: float = 0.0, share: int = 1) -> Record:
    """Stamp the end of the run: wall time since ``started`` (perf_counter) plus ``before`` (the
    wall time of earlier processes, for a resumed run), divided among the ``share`` runs of its
    pack; time, environment."""
    record.wall_time_s = (before + time.perf_counter() - started) / share
    record.finished_at = utc_now()
    record.device = record.device or device
    record.environment = environment()
    return record


def failed_result(config: RunConfig, error_type: str, message: str, trace: str | None = None) -> RunResult:
    """The result of a run that died outside :func:`execute` (e.g. its worker process was killed)."""
    record = Record.start(config, run_code(config))
    record.fail(error_type, message, trace)
    return RunResult(_finish(record, time.perf_counter(), "unknown"), {})


def execute(config: RunConfig, *, device: str = "auto", data_root: str | None = None,
            download: bool = False, log: Log = print, checkpoint: Path | None = None,
            checkpoint_every: int = 0, keep_model: bool = False) -> RunResult:
    """Train and evaluate one run (a pack of one, :func:`execute_pack`)."""
    (result,) = execute_pack([config], device=device, data_root=data_root, download=download, log=log,
                             checkpoint=checkpoint, checkpoint_every=checkpoint_every, keep_model=keep_model)
    return result


def execute_pack(configs: Sequence[RunConfig], *, device: str = "auto", data_root: str | None = None,
                 download: bool = False, log: Log = print, checkpoint: Path | None = None,
                 checkpoint_every: int = 0, keep_model: bool = False) -> list[RunResult]:
    """Train ``configs`` (runs that differ only in their seed and their method's pack scalars,
    :func:`benchmark.ml.pack.pack_key`)
    together and evaluate each; one result per run, in order. Never raises for a failing run
    (status ``failed`` or ``diverged`` in its record; an error that stops the pack fails every
    run still in it), except KeyboardInterrupt, which leaves no record.

    With ``checkpoint`` and ``checkpoint_every``, the training state is saved there every
    ``checkpoint_every`` epochs, and a pack finding a checkpoint of its own (the same runs, made
    by the same code) resumes from it (same numbers as an uninterrupted pack on CPU). Deleting
    the file is the caller's job. ``keep_model`` returns each trained state dict with its
    result. A record's times count every process that worked on it (``resumed``: how many times
    it resumed); a packed run's times are its share (1 / K) of the pack's, and its ``pack``
    field names the pack.
    """
    t0 = time.perf_counter()
    size = len(configs)
    records = [Record.start(config, run_code(config)) for config in configs]
    evaluations = [Evaluation() for _ in configs]
    states: list[dict[str, Any] | None] = [None] * size
    before = SpentSoFar(0.0, 0.0, 0)
    active = list(range(size))  # runs neither failed nor diverged
    for k, record in enumerate(records):
        record.resumed = 0
        if size > 1:
            record.pack = {"size": size, "index": k, "run_ids": [c.run_id for c in configs]}
    try:
        torch_device = resolve_device(device)
        for record in records:
            record.device = describe_device(torch_device)
        datas, methods, orders, curve_gens, eval_gens, curves = [], [], [], [], [], []
        for config, record in zip(configs, records):
            seeds = record.seeds
            data = load_dataset(config.dataset.name, data_root=data_root, seed=seeds["data"],
                                train_size=config.dataset.train_size, test_size=config.dataset.test_size,
                                device=torch_device, download=download, float_train=False,
                                valid_fraction=validation_fraction(config.method, config.hyperparameters))
            torch.manual_seed(seeds["init"])
            methods.append(build_method(config.method, config.hyperparameters, config.model, data.shape).to(torch_device))
            datas.append(data)
            orders.append(torch.Generator().manual_seed(seeds["order"]))
            curve_gens.append(torch.Generator(torch_device).manual_seed(seeds["curves"]))
            eval_gens.append(torch.Generator(torch_device).manual_seed(seeds["eval"]))
            curves.append(CurvePoints(config.eval, config.train.epochs, curve_gens[-1]))
            record.data = data.files.to_dict() if data.files is not None else None
            if data.valid is not None:
                where = "published" if DATASETS[config.dataset.name].valid_size else "held out from the training split"
                record.data = {**(record.data or {}), "valid": {"examples": len(data.valid), "source": where}}

        torch.manual_seed(records[0].seeds["train"])
        train = configs[0].train
        # A run alone draws its noise from the global RNG seeded with its "train" seed; in a pack each
        # run draws the same noise from its own generator seeded alike (benchmark.ml.pack.NoiseTape).
        noise = [torch.Generator(torch_device).manual_seed(r.seeds["train"]) for r in records]
        held_outs = [d.valid.x if d.valid is not None else None for d in datas]  # never the test split
        lengths = datas[0].train.lengths if size == 1 else None  # sentences: length-bucketed batches
        trainer = PackTrainer(methods, [d.train.x for d in datas], train, orders, held_outs, noise, lengths)
        generators = [{"curves": g} for g in curve_gens]
        train_time = 0.0
        if checkpoint is not None and checkpoint.exists():
            restored = load_checkpoint(checkpoint, trainer, generators, records)
            if restored is None:
                log(f"  {_name(configs)}: checkpoint {checkpoint} was made by other code: starting afresh")
            else:
                before, train_time = restored, restored.train_time_s
                for record in records:
                    record.resumed = restored.resumed + 1
                log(f"  {_name(configs)} resumed from {checkpoint} after epoch {trainer.epoch}")
        while not trainer.done:
            t_epoch = time.perf_counter()
            means = trainer.run_epoch()
            train_time += time.perf_counter() - t_epoch
            for k in list(active):
                if means[k] is None:
                    error = trainer.diverged[k]
                    records[k].diverge(error.epoch + 1, str(error))
                    active.remove(k)
                    continue
                point = curves[k].point(methods[k], datas[k].test.x, trainer.epoch, means[k])
                records[k].curves.append(point)
                log(f"  {configs[k].run_id} epoch {trainer.epoch}/{train.epochs} "
                    + " ".join(f"{key}={v:.4g}" for key, v in point.items() if key != "epoch"))
            if not active:
                break
            if checkpoint is not None and checkpoint_every and trainer.epoch % checkpoint_every == 0 and not trainer.done:
                wall = before.wall_time_s + time.perf_counter() - t0
                save_checkpoint(checkpoint, trainer, generators, records, SpentSoFar(train_time, wall, records[0].resumed))
        schedule = trainer.finish() if active else {}
        for k in active:
            record, config = records[k], configs[k]
            record.train_time_s = train_time / size
            t_eval = time.perf_counter()
            try:
                evaluations[k] = evaluate(methods[k], datas[k].test, config.eval, eval_gens[k],
                                          mi_x=datas[k].train.x if config.eval.mi_split == "train" else None,
                                          kind=arch_kind(config.model), vocabulary=datas[k].vocabulary)
                evaluation = evaluations[k]
                record.metrics, record.estimators, record.vectors = evaluation.metrics, evaluation.estimators, evaluation.vectors
                record.per_class, record.noise = evaluation.per_class, evaluation.noise
                record.invalid = evaluation.invalid or None
                record.texts = evaluation.texts
                curves[k].final_mi(record.curves, evaluation)
                record.method_extras = {**methods[k].record_extras(), **({"validation": schedule} if schedule else {})}
                record.status = "ok"
                if keep_model:
                    states[k] = {key: v.detach().cpu() for key, v in methods[k].state_dict().items()}
            except Exception as exc:  # one run's evaluation failing leaves the others
                record.fail(type(exc).__name__, str(exc), traceback.format_exc())
            record.eval_time_s = time.perf_counter() - t_eval
    except DivergedError as exc:  # raised by a method's own step (a pack of one)
        for k in active:
            records[k].diverge(exc.epoch + 1, str(exc))
    except Exception as exc:  # a failing pack is recorded; the grid goes on
        for k in active:
            if records[k].status == "running":
                records[k].fail(type(exc).__name__, str(exc), traceback.format_exc())
    results = []
    for k, record in enumerate(records):
        ok = record.status == "ok"
        _finish(record, t0, device, before.wall_time_s, size)
        results.append(RunResult(record, evaluations[k].images if ok else {}, states[k]))
    return results


def _name(configs: Sequence[RunConfig]) -> str:
    return configs[0].run_id if len(configs) == 1 else f"pack of {len(configs)} ({configs[0].run_id}, ...)"
