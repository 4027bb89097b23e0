"""The one training loop every method uses.

Data stay on the training device as one tensor; each epoch draws a permutation and slices
batches from it (no DataLoader, no per-batch Python objects beyond the loss dict).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from .errors import DivergedError
from .method import Method, TrainingProgress


@dataclass
class TrainConfig:
    """Resolved training settings of a run (the ``[train]`` table of a grid)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: float = 0.0  # max global gradient norm; 0 disables clipping


EpochCallback = Callable[[int, dict[str, float]], None]


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.optimizer]
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def train(method: Method, x: Tensor, config: TrainConfig, order: torch.Generator,
          on_epoch: EpochCallback | None = None) -> None:
    """Train ``method`` on ``x`` [N, *shape] (already on the training device).

    ``order`` (a CPU generator) draws the batch order. After each epoch ``on_epoch(epoch,
    means)`` receives the example-weighted mean of every loss part. Raises
    :class:`DivergedError` when an epoch's loss is not finite.
    """
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer = make_optimizer(method.parameters(), config)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
                 if config.lr_schedule == "cosine" else None)
    step = 0
    for epoch in range(config.epochs):
        method.train()
        perm = torch.randperm(n, generator=order).to(x.device)
        sums: dict[str, Tensor] = {}
        for start in range(0, n, config.batch_size):
            batch = x[perm[start:start + config.batch_size]]
            parts = method.loss(batch, TrainingProgress(epoch, step, total))
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(method.parameters(), config.grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            weight = batch.shape[0]
            for key, value in parts.items():
                value = torch.as_tensor(value).detach() * weight
                sums[key] = sums[key] + value if key in sums else value
        means = {key: float(value) / n for key, value in sums.items()}
        if not all(math.isfinite(v) for v in means.values()):
            raise DivergedError(epoch, step, means)
        if on_epoch is not None:
            on_epoch(epoch, means)
