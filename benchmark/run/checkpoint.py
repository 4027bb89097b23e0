"""Resumable checkpoints of one run: model, optimiser, schedule, RNG states, the curves so far,
and the time spent on the run so far (so a resumed run's times count every process).

A checkpoint names its run and the code that made it (the record's ``code.key``): one made by
other code is not resumed from. Files are written atomically, so a killed run leaves either
the previous checkpoint or the new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..ml.train import Trainer
from .record import Record
from .store import atomic_torch_save


def _rng_states(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    states = {name: g.get_state() for name, g in generators.items()}
    states["torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


class SpentSoFar(NamedTuple):
    """What the processes before this one spent on a run, up to its checkpoint: seconds of
    training and of wall time (loading included), and how many times it was resumed before."""

    train_time_s: float
    wall_time_s: float
    resumed: int


def save_checkpoint(path: Path, trainer: Trainer, generators: dict[str, torch.Generator], record: Record,
                    spent: SpentSoFar) -> None:
    """Atomically save everything needed to resume ``record``'s run after ``trainer.epoch`` epochs
    (``spent``: the run's times so far, every process included, and its resumptions so far)."""
    state = {"run_id": record.run_id, "code": record.code["key"], "trainer": trainer.state_dict(),
             "rng": _rng_states(generators), "curves": record.curves, "train_time_s": spent.train_time_s,
             "wall_time_s": spent.wall_time_s, "resumed": spent.resumed}
    atomic_torch_save(state, path)


def load_checkpoint(path: Path, trainer: Trainer, generators: dict[str, torch.Generator],
                    record: Record) -> SpentSoFar | None:
    """Restore a checkpoint of ``record``'s run into ``trainer``, the generators and the record's
    curves; returns what was spent on the run before it, or None (nothing restored) when the
    checkpoint was made by other code (another ``record.code["key"]``). A checkpoint of another
    run raises RuntimeError. (A checkpoint from before wall times were saved counts its training
    time as wall time.)"""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("run_id") != record.run_id:
        raise RuntimeError(f"checkpoint {path} belongs to run {state.get('run_id')}, not {record.run_id}: delete it")
    if state.get("code") != record.code["key"]:
        return None
    trainer.load_state_dict(state["trainer"])
    rng = state["rng"]
    for name, generator in generators.items():
        generator.set_state(rng[name])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    record.curves = list(state["curves"])
    train = float(state["train_time_s"])
    return SpentSoFar(train, float(state.get("wall_time_s", train)), int(state.get("resumed", 0)))
