"""The one training loop every method uses.

Data stay on the training device as one tensor; each epoch draws a permutation and slices
batches from it (no DataLoader, no per-batch Python objects beyond the loss dict).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

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


class OptimiserTools:
    """The :class:`~benchmark.ml.method.StepTools` a method's ``training_step`` gets: one
    optimiser over every parameter of ``method``, the run's gradient clipping, and fresh
    minibatches of ``x`` [N, *shape] (uint8 or float) drawn from ``order`` (a CPU generator).

    One optimiser with a parameter subset stepped at a time is the same as one optimiser per
    subset for Adam / AdamW: their state (moments, step count) is per parameter and a parameter
    whose gradient is None is skipped entirely.
    """

    def __init__(self, method: Method, optimizer: torch.optim.Optimizer, config: TrainConfig,
                 x: Tensor | None = None, order: torch.Generator | None = None):
        self.method, self.optimizer, self.config, self.x, self.order = method, optimizer, config, x, order

    def step(self, loss: Tensor, params: Iterable[nn.Parameter] | None = None) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.method.parameters(), self.config.grad_clip)
        if params is not None:
            stepped = {id(p) for p in params}
            for p in self.method.parameters():
                if id(p) not in stepped:
                    p.grad = None
        self.optimizer.step()

    def fresh_batch(self) -> Tensor:
        if self.x is None or self.order is None:
            raise RuntimeError("these step tools have no training data to draw fresh minibatches from")
        n = self.x.shape[0]
        index = torch.randperm(n, generator=self.order)[:self.config.batch_size].to(self.x.device)
        return to_unit(self.x[index])


class Trainer:
    """Trains ``method`` one epoch at a time; its whole state (model, method buffers, optimiser,
    learning-rate schedule, position) round-trips through :meth:`state_dict` for checkpoints.

    ``x`` [N, *shape] stays on the training device, float32 or uint8 pixels (each batch is
    then converted with :func:`benchmark.data.splits.to_unit`); each epoch draws a permutation from
    ``order`` (a CPU generator) and slices batches from it. Each batch is one call of the
    method's ``training_step`` (by default: loss, backward, clip, one optimiser step); after each
    epoch the method's ``on_epoch_end`` gets ``held_out`` [N', *shape] (float; None: none).
    """

    def __init__(self, method: Method, x: Tensor, config: TrainConfig, order: torch.Generator,
                 held_out: Tensor | None = None):
        self.method, self.x, self.config, self.order, self.held_out = method, x, config, order, held_out
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
        tools = OptimiserTools(method, self.optimizer, config, x, self.order)  # the current optimiser
        sums: dict[str, Tensor] = {}
        for start in range(0, n, config.batch_size):
            batch = to_unit(x[perm[start:start + config.batch_size]])
            parts = method.training_step(batch, TrainingProgress(self.epoch, self.step, self.total_steps), tools)
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
        method.on_epoch_end(self.epoch - 1, self.held_out)
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
          on_epoch: EpochCallback | None = None, held_out: Tensor | None = None) -> None:
    """Train ``method`` on ``x`` [N, *shape] for ``config.epochs`` epochs (see :class:`Trainer`);
    ``on_epoch(epoch, means)`` is called after each epoch (0-based)."""
    trainer = Trainer(method, x, config, order, held_out)
    while not trainer.done:
        means = trainer.run_epoch()
        if on_epoch is not None:
            on_epoch(trainer.epoch - 1, means)
