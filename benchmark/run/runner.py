"""One run: load its data, build its method, train it, evaluate it, and return its record.

The runner reads and writes no file but the checkpoint it is handed (resuming from it when it
is the run's own); which runs to execute is the executor's choice and the store writes the
record. Every random stream is seeded from the run id (:meth:`RunConfig.stream_seed`), so the
same config gives the same numbers on the same CPU.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

from ..config import RunConfig
from ..data.catalog import load_dataset
from ..device import describe_device, resolve_device
from ..errors import DivergedError
from ..ml.method import build_method
from ..ml.train import Trainer
from .checkpoint import SpentSoFar, load_checkpoint, save_checkpoint
from .evaluate import CurvePoints, Evaluation, evaluate
from .provenance import environment, method_code
from .record import Record, utc_now

Log = Callable[[str], None]


class RunResult(NamedTuple):
    """A run's ``record``, the image grids [N, C, H, W] in [0, 1] to store beside it and, when
    asked for, the trained model's state dict (on the CPU)."""

    record: Record
    images: dict[str, Tensor]
    model_state: dict[str, Any] | None = None


def _finish(record: Record, started: float, device: str, before: float = 0.0) -> Record:
    """Stamp the end of the run: wall time since ``started`` (perf_counter) plus ``before`` (the
    wall time of earlier processes, for a resumed run), time, environment."""
    record.wall_time_s = before + time.perf_counter() - started
    record.finished_at = utc_now()
    record.device = record.device or device
    record.environment = environment()
    return record


def failed_result(config: RunConfig, error_type: str, message: str, trace: str | None = None) -> RunResult:
    """The result of a run that died outside :func:`execute` (e.g. its worker process was killed)."""
    record = Record.start(config, method_code(config.method))
    record.fail(error_type, message, trace)
    return RunResult(_finish(record, time.perf_counter(), "unknown"), {})


def execute(config: RunConfig, *, device: str = "auto", data_root: str | None = None,
            download: bool = False, log: Log = print, checkpoint: Path | None = None,
            checkpoint_every: int = 0, keep_model: bool = False) -> RunResult:
    """Train and evaluate one run; never raises for a failing run (status ``failed`` or
    ``diverged`` in the record), except KeyboardInterrupt, which leaves no record.

    With ``checkpoint`` and ``checkpoint_every``, the training state is saved there every
    ``checkpoint_every`` epochs, and a run finding a checkpoint of its own resumes from it
    (same numbers as an uninterrupted run on CPU). Deleting the file is the caller's job.
    ``keep_model`` returns the trained state dict with the result. The record's times count
    every process that worked on the run (``resumed``: how many times it resumed).
    """
    t0 = time.perf_counter()
    record = Record.start(config, method_code(config.method))
    record.resumed = 0
    evaluation, model_state, before = Evaluation(), None, SpentSoFar(0.0, 0.0, 0)
    try:
        torch_device = resolve_device(device)
        record.device = describe_device(torch_device)
        seeds = record.seeds
        data = load_dataset(config.dataset.name, data_root=data_root, seed=seeds["data"],
                            train_size=config.dataset.train_size, test_size=config.dataset.test_size,
                            device=torch_device, download=download, float_train=False)
        torch.manual_seed(seeds["init"])
        method = build_method(config.method, config.hyperparameters, config.model, data.shape).to(torch_device)
        order = torch.Generator().manual_seed(seeds["order"])
        curve_gen = torch.Generator(torch_device).manual_seed(seeds["curves"])
        eval_gen = torch.Generator(torch_device).manual_seed(seeds["eval"])
        curves = CurvePoints(config.eval, config.train.epochs, curve_gen)

        torch.manual_seed(seeds["train"])
        trainer = Trainer(method, data.train.x, config.train, order, held_out=data.test.x)
        generators = {"curves": curve_gen}
        record.data = data.files.to_dict() if data.files is not None else None
        train_time = 0.0
        if checkpoint is not None and checkpoint.exists():
            restored = load_checkpoint(checkpoint, trainer, generators, record)
            if restored is None:
                log(f"  {config.run_id}: checkpoint {checkpoint} was made by other code: starting afresh")
            else:
                before, train_time, record.resumed = restored, restored.train_time_s, restored.resumed + 1
                log(f"  {config.run_id} resumed from {checkpoint} after epoch {trainer.epoch}")
        while not trainer.done:
            t_epoch = time.perf_counter()
            parts = trainer.run_epoch()
            train_time += time.perf_counter() - t_epoch
            point = curves.point(method, data.test.x, trainer.epoch, parts)
            record.curves.append(point)
            log(f"  {config.run_id} epoch {trainer.epoch}/{config.train.epochs} "
                + " ".join(f"{k}={v:.4g}" for k, v in point.items() if k != "epoch"))
            if checkpoint is not None and checkpoint_every and trainer.epoch % checkpoint_every == 0 and not trainer.done:
                wall = before.wall_time_s + time.perf_counter() - t0
                save_checkpoint(checkpoint, trainer, generators, record, SpentSoFar(train_time, wall, record.resumed))
        record.train_time_s = train_time
        t_eval = time.perf_counter()
        evaluation = evaluate(method, data.test, config.eval, eval_gen,
                              mi_x=data.train.x if config.eval.mi_split == "train" else None)
        record.metrics, record.estimators, record.vectors = evaluation.metrics, evaluation.estimators, evaluation.vectors
        record.per_class, record.noise = evaluation.per_class, evaluation.noise
        curves.final_mi(record.curves, evaluation)
        record.eval_time_s = time.perf_counter() - t_eval
        record.method_extras = method.record_extras()
        record.status = "ok"
        if keep_model:
            model_state = {k: v.detach().cpu() for k, v in method.state_dict().items()}
    except DivergedError as exc:
        record.diverge(exc.epoch + 1, str(exc))
    except Exception as exc:  # a failing run is recorded; the grid goes on
        record.fail(type(exc).__name__, str(exc), traceback.format_exc())
    ok = record.status == "ok"
    return RunResult(_finish(record, t0, device, before.wall_time_s), evaluation.images if ok else {}, model_state)
