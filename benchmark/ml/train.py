"""The one training loop every method uses.

Data stay on the training device as one tensor; each epoch draws a permutation and slices
batches from it (no DataLoader, no per-batch Python objects beyond the loss dict).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

from ..config import TrainConfig
from ..data.splits import to_unit
from ..errors import DivergedError
from .method import Method, TrainingProgress


EpochCallback = Callable[[int, dict[str, float]], None]


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam / AdamW, fused where every parameter allows it (about 1.3x faster steps on CPU,
    docs/performance.md)."""
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.optimizer]
    params = list(params)
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return cls(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


class Trainer:
    """Trains ``method`` one epoch at a time; its whole state (model, method buffers, optimiser,
    learning-rate schedule, position) round-trips through :meth:`state_dict` for checkpoints.

    ``x`` [N, *shape] stays on the training device, float32 or uint8 pixels (each batch is
    then converted with :func:`benchmark.data.splits.to_unit`); each epoch draws a permutation from
    ``order`` (a CPU generator) and slices batches from it.
    """

    def __init__(self, method: Method, x: Tensor, config: TrainConfig, order: torch.Generator):
        self.method, self.x, self.config, self.order = method, x, config, order
        self.steps_per_epoch = math.ceil(x.shape[0] / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.optimizer = make_optimizer(method.parameters(), config)
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.total_steps)
                          if config.lr_schedule == "cosine" else None)
        self.epoch = 0  # epochs completed
        self.step = 0  # optimiser steps taken

    @property
    def done(self) -> bool:
        return self.epoch >= self.config.epochs

    def run_epoch(self) -> dict[str, float]:
        """One pass over the data; returns the example-weighted mean of every loss part.
        Raises :class:`DivergedError` when the epoch's loss is not finite."""
        method, x, config = self.method, self.x, self.config
        n = x.shape[0]
        method.train()
        perm = torch.randperm(n, generator=self.order).to(x.device)
        sums: dict[str, Tensor] = {}
        for start in range(0, n, config.batch_size):
            batch = to_unit(x[perm[start:start + config.batch_size]])
            parts = method.loss(batch, TrainingProgress(self.epoch, self.step, self.total_steps))
            self.optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(method.parameters(), config.grad_clip)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.step += 1
            weight = batch.shape[0]
            for key, value in parts.items():
                value = torch.as_tensor(value).detach() * weight
                sums[key] = sums[key] + value if key in sums else value
        means = {key: float(value) / n for key, value in sums.items()}
        self.epoch += 1
        if not all(math.isfinite(v) for v in means.values()):
            raise DivergedError(self.epoch - 1, self.step, means)
        return means

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "order": self.order.get_state(), "epoch": self.epoch, "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.order.set_state(state["order"])
        self.epoch, self.step = state["epoch"], state["step"]


def train(method: Method, x: Tensor, config: TrainConfig, order: torch.Generator,
          on_epoch: EpochCallback | None = None) -> None:
    """Train ``method`` on ``x`` [N, *shape] for ``config.epochs`` epochs (see :class:`Trainer`);
    ``on_epoch(epoch, means)`` is called after each epoch (0-based)."""
    trainer = Trainer(method, x, config, order)
    while not trainer.done:
        means = trainer.run_epoch()
        if on_epoch is not None:
            on_epoch(trainer.epoch - 1, means)
