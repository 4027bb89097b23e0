"""Resumable checkpoints of one run or pack: model, optimiser, schedule, RNG states, the curves so far,
and the time spent on the run so far (so a resumed run's times count every process).

A checkpoint names its run and the code that made it (the record's ``code.key``): one made by
other code is not resumed from. Files are written atomically, so a killed run leaves either
the previous checkpoint or the new one.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch

from ..ml.train import Trainer
from ..results.record import Record
from ..results.store import atomic_torch_save


def _rng_states(generators: Sequence[dict[str, torch.Generator]]) -> dict[str, Any]:
    states: dict[str, Any] = {"runs": [{name: g.get_state() for name, g in gens.items()} for gens in generators]}
    states["torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


class SpentSoFar(NamedTuple):
    """What the processes before this one spent on a run (or pack), up to its checkpoint:
    seconds of training and of wall time (loading included), and how many times it was
    resumed before."""

    train_time_s: float
    wall_time_s: float
    resumed: int


def save_checkpoint(path: Path, trainer: Trainer, generators: Sequence[dict[str, torch.Generator]],
                    records: Sequence[Record], spent: SpentSoFar) -> None:
    """Atomically save everything needed to resume the run (or pack) of ``records`` after
    ``trainer.epoch`` epochs: the trainer, each run's generators and curves, the global RNG
    (``spent``: the times so far, every process included, and the resumptions so far)."""
    state = {"run_ids": [r.run_id for r in records], "codes": [r.code["key"] for r in records],
             "trainer": trainer.state_dict(), "rng": _rng_states(generators),
             "curves": [r.curves for r in records], "train_time_s": spent.train_time_s,
             "wall_time_s": spent.wall_time_s, "resumed": spent.resumed}
    atomic_torch_save(state, path)


def load_checkpoint(path: Path, trainer: Trainer, generators: Sequence[dict[str, torch.Generator]],
                    records: Sequence[Record]) -> SpentSoFar | None:
    """Restore a checkpoint of the run (or pack) of ``records`` into ``trainer``, the generators
    and the records' curves; returns what was spent before, or None (nothing restored) when it
    was made by other code (another ``code["key"]``) or by an older checkpoint format. A
    checkpoint of other runs raises RuntimeError."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    ids = [r.run_id for r in records]
    saved = state.get("run_ids", [state.get("run_id")])
    if saved != ids:
        raise RuntimeError(f"checkpoint {path} belongs to run {', '.join(map(str, saved))}, not {', '.join(ids)}: delete it")
    if state.get("codes") != [r.code["key"] for r in records]:
        return None
    trainer.load_state_dict(state["trainer"])
    rng = state["rng"]
    for gens, saved_states in zip(generators, rng["runs"]):
        for name, generator in gens.items():
            generator.set_state(saved_states[name])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    for record, curves in zip(records, state["curves"]):
        record.curves = list(curves)
    return SpentSoFar(float(state["train_time_s"]), float(state["wall_time_s"]), int(state["resumed"]))


def checkpoint_damage(path: Path) -> str | None:
    """Why checkpoint file ``path`` cannot be read (truncated or damaged: its zip archive or a
    member's checksum is broken), or None (readable, or no such file)."""
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if bad is None else f"member {bad} is damaged"
