"""The one training loop every method uses, for one run or a pack of runs trained together.

Data stay on the training device as one tensor per run; each epoch draws a permutation per
run and slices batches from it (no DataLoader, no per-batch Python objects beyond the loss
dict). A pack of K >= 2 runs of one packable method trains as one stacked model
(:mod:`benchmark.ml.pack`); a single run is a pack of one and steps through the method's own
``training_step``, so every method, packable or not, trains through :class:`PackTrainer`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..data.splits import to_unit
from ..errors import DivergedError
from .method import Method, TrainingProgress
from .pack import StackedMethods, clip_per_run


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


class PackTrainer:
    """Trains K >= 1 runs of one method and training config together, one epoch at a time.

    ``methods[k]`` is run k's model (its own initialisation), ``xs[k]`` [N, *shape] its training
    data on the training device (float32 or uint8 pixels, converted per batch with
    :func:`benchmark.data.splits.to_unit`; every run has the same N), ``orders[k]`` its
    batch-order generator (CPU), ``held_outs[k]`` the split its ``on_epoch_end`` gets and, in a
    pack, ``noise[k]`` the generator its sampling noise comes from (on the training device;
    None: seeded from the global RNG). A run alone draws its noise from the global RNG.

    K = 1: each batch is one call of the method's ``training_step`` (loss, backward, clip, one
    optimiser step by default). K >= 2: the methods must be packable
    (:func:`benchmark.ml.pack.pack_problem`); their parameters are stacked along a leading run
    axis, each step computes every run's loss in one vectorised call, clips each run's
    gradient by its own norm and takes one optimiser step over the stack (Adam's state is per
    element, so each run keeps its own). A run whose epoch means are not finite is marked in
    :attr:`diverged` (its ``DivergedError``) and left out of later epochs' means; the others go
    on unchanged. The whole state round-trips through :meth:`state_dict` for checkpoints.
    """

    def __init__(self, methods: Sequence[Method], xs: Sequence[Tensor], config: TrainConfig,
                 orders: Sequence[torch.Generator], held_outs: Sequence[Tensor | None] | None = None,
                 noise: Sequence[torch.Generator] | None = None):
        if not len(methods) == len(xs) == len(orders) >= 1:
            raise ValueError("a pack needs one method, one data tensor and one order generator per run")
        if len({x.shape for x in xs}) != 1:
            raise ValueError(f"the runs of a pack need data of one shape, got {sorted({tuple(x.shape) for x in xs})}")
        self.methods, self.config, self.orders = list(methods), config, list(orders)
        self.held_outs = list(held_outs) if held_outs is not None else [None] * len(methods)
        self.size = len(self.methods)
        self.n = xs[0].shape[0]
        self.steps_per_epoch = math.ceil(self.n / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        if self.size == 1:
            self.xs, self.stack = xs[0].unsqueeze(0), None
            params: Iterable[Tensor] = self.methods[0].parameters()
        else:
            self.xs = torch.stack(list(xs))  # [K, N, *shape]
            if noise is None:  # no seeds given: each run's noise stream seeded from the global RNG
                noise = [torch.Generator(xs[0].device).manual_seed(int(torch.randint(2**62, ()))) for _ in xs]
            self.stack = StackedMethods(self.methods, noise)
            params = self.stack.parameters()
        self.optimizer = make_optimizer(params, config)
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.total_steps)
                          if config.lr_schedule == "cosine" else None)
        self.epoch = 0  # epochs completed
        self.step = 0  # optimiser steps taken
        self.diverged: dict[int, DivergedError] = {}  # run index -> how it diverged

    @property
    def done(self) -> bool:
        return self.epoch >= self.config.epochs

    def train_step(self, batch: Tensor, progress: TrainingProgress) -> dict[str, Any]:
        """One optimisation step of every run on ``batch`` [K, B, *shape] (float, in [0, 1];
        run k's batch is ``batch[k]``); returns the loss parts, scalars for one run (from the
        method's ``training_step``), [K] each for a pack."""
        if self.stack is None:
            tools = OptimiserTools(self.methods[0], self.optimizer, self.config, self.xs[0], self.orders[0])
            return self.methods[0].training_step(batch[0], progress, tools)
        parts = self.stack.loss(batch, progress)
        self.optimizer.zero_grad(set_to_none=True)
        parts["loss"].sum().backward()  # run k's parameters get run k's gradient only
        if self.config.grad_clip > 0:
            clip_per_run(self.stack.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return parts

    def run_epoch(self) -> list[dict[str, float] | None]:
        """One pass over each run's data; returns per run the example-weighted mean of every
        loss part (None for a run that has diverged, now or before)."""
        for m in self.methods:
            m.train()
        perms = torch.stack([torch.randperm(self.n, generator=g) for g in self.orders]).to(self.xs.device)
        runs = torch.arange(self.size, device=self.xs.device).unsqueeze(1)
        sums: dict[str, Tensor] = {}
        for start in range(0, self.n, self.config.batch_size):
            progress = TrainingProgress(self.epoch, self.step, self.total_steps)
            index = perms[:, start:start + self.config.batch_size]
            parts = self.train_step(to_unit(self.xs[runs, index]), progress)
            if self.scheduler is not None:
                self.scheduler.step()
            self.step += 1
            weight = index.shape[1]
            for key, value in parts.items():
                value = torch.as_tensor(value).detach() * weight
                sums[key] = sums[key] + value if key in sums else value
        self.epoch += 1
        means = [{key: float(value.reshape(-1)[k] if value.numel() > 1 else value) / self.n
                  for key, value in sums.items()} for k in range(self.size)]
        out: list[dict[str, float] | None] = []
        for k, run_means in enumerate(means):
            if k not in self.diverged and not all(math.isfinite(v) for v in run_means.values()):
                self.diverged[k] = DivergedError(self.epoch - 1, self.step, run_means)
            out.append(None if k in self.diverged else run_means)
        if self.stack is not None:
            self.stack.write_back()
        for k, m in enumerate(self.methods):
            if k not in self.diverged:
                m.on_epoch_end(self.epoch - 1, self.held_outs[k])
        return out

    def state_dict(self) -> dict[str, Any]:
        state = {"optimizer": self.optimizer.state_dict(),
                 "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                 "epoch": self.epoch, "step": self.step}
        if self.stack is None:
            return {"method": self.methods[0].state_dict(), "order": self.orders[0].get_state(), **state}
        return {"stack": self.stack.state_dict(), "orders": [g.get_state() for g in self.orders],
                "diverged": {k: (e.epoch, e.step, e.parts) for k, e in self.diverged.items()}, **state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.stack is None:
            self.methods[0].load_state_dict(state["method"])
            self.orders[0].set_state(state["order"])
        else:
            self.stack.load_state_dict(state["stack"])
            for g, s in zip(self.orders, state["orders"]):
                g.set_state(s)
            self.diverged = {int(k): DivergedError(*v) for k, v in state["diverged"].items()}
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = state["epoch"], state["step"]


class Trainer(PackTrainer):
    """One run as a pack of one: ``method`` trained on ``x`` [N, *shape] with batch order from
    ``order``; ``held_out`` [N', *shape] goes to its ``on_epoch_end``. :meth:`run_epoch`
    returns the run's means and raises :class:`DivergedError` when they are not finite."""

    def __init__(self, method: Method, x: Tensor, config: TrainConfig, order: torch.Generator,
                 held_out: Tensor | None = None):
        super().__init__([method], [x], config, [order], [held_out])
        self.method, self.x, self.order, self.held_out = method, x, order, held_out

    def run_epoch(self) -> dict[str, float]:  # type: ignore[override]
        (means,) = super().run_epoch()
        if means is None:
            raise self.diverged[0]
        return means


def train(method: Method, x: Tensor, config: TrainConfig, order: torch.Generator,
          on_epoch: EpochCallback | None = None, held_out: Tensor | None = None) -> None:
    """Train ``method`` on ``x`` [N, *shape] for ``config.epochs`` epochs (see :class:`Trainer`);
    ``on_epoch(epoch, means)`` is called after each epoch (0-based)."""
    trainer = Trainer(method, x, config, order, held_out)
    while not trainer.done:
        means = trainer.run_epoch()
        if on_epoch is not None:
            on_epoch(trainer.epoch - 1, means)
