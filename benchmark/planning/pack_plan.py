"""The packs a ``run --pack`` would make of a job's runs, and the training steps they take: what
``run --dry-run --pack N|auto`` prints, with no timing and no GPU needed (``--gpu-memory GIB``
plans ``--pack auto`` for a GPU of that size).

A pack takes as many optimiser steps as one of its runs (its runs share every batch shape and
the epochs), so a plan's pack-steps are the launch-bound GPU's work: the sum over packs of one
run's steps, against the run-steps of training every run alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from ..config import RunConfig
from ..data.catalog import DATASETS
from ..execution.executor import describe_packs, make_packs


def run_steps(config: RunConfig) -> int:
    """Optimiser steps of one run: epochs x batches per epoch (the configured training subset, else
    the data set's published training split; length-bucketed text batches counted as N / batch)."""
    examples = config.dataset.train_size or DATASETS[config.dataset.name].train_size or 0
    return config.train.epochs * math.ceil(examples / config.train.batch_size)


@dataclass(frozen=True)
class PackPlan:
    """``packs`` of a job's runs, with the steps of training each run alone (``run_steps``) and of
    training the packs (``pack_steps``)."""

    packs: list[list[RunConfig]]
    run_steps: int
    pack_steps: int

    def text(self, where: str) -> str:
        """Two lines: the packs, and the steps they save."""
        ratio = self.run_steps / self.pack_steps if self.pack_steps else 1.0
        return (f"pack plan ({where}): {describe_packs(self.packs)}\n"
                f"  {self.run_steps / 1e6:.2f} M run-steps trained as {self.pack_steps / 1e6:.2f} M pack-steps "
                f"({ratio:.1f}x fewer steps)")


def plan_packs(runs: Sequence[RunConfig], size: int | Callable[[RunConfig], int]) -> PackPlan:
    """The packs ``run --pack`` makes of ``runs`` with ``size`` (see :func:`make_packs`)."""
    packs = make_packs(runs, size)
    return PackPlan(packs, sum(run_steps(c) for c in runs), sum(run_steps(pack[0]) for pack in packs))
