"""Resumable checkpoints of one run: model, optimiser, schedule, RNG states and the curves so far.

A checkpoint names its run and the code that made it (the record's ``code.key``): one made by
other code is not resumed from. Files are written atomically, so a killed run leaves either
the previous checkpoint or the new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def save_checkpoint(path: Path, trainer: Trainer, generators: dict[str, torch.Generator], record: Record,
                    train_time: float) -> None:
    """Atomically save everything needed to resume ``record``'s run after ``trainer.epoch`` epochs
    (``train_time``: seconds of training so far)."""
    state = {"run_id": record.run_id, "code": record.code["key"], "trainer": trainer.state_dict(),
             "rng": _rng_states(generators), "curves": record.curves, "train_time_s": train_time}
    atomic_torch_save(state, path)


def load_checkpoint(path: Path, trainer: Trainer, generators: dict[str, torch.Generator],
                    record: Record) -> float | None:
    """Restore a checkpoint of ``record``'s run into ``trainer``, the generators and the record's
    curves; returns the training time spent before it (seconds), or None (nothing restored) when
    the checkpoint was made by other code (another ``record.code["key"]``). A checkpoint of
    another run raises RuntimeError."""
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
    return float(state["train_time_s"])
