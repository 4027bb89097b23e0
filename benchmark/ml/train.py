"""The one training loop every method uses, for one run or a pack of runs trained together.

Data stay on the training device as one tensor per run; each epoch draws a permutation per
run and slices batches from it (no DataLoader, no per-batch Python objects beyond the loss
dict). :class:`Trainer` runs the epochs of K >= 1 runs; how they take one optimisation step is
its :data:`Step`'s business: a run alone steps through its method's own ``training_step``
(:class:`AloneStep`), a pack of K >= 2 runs of one packable method as one stacked model
(:class:`StackStep`, :mod:`benchmark.ml.pack`). Every method, packable or not, trains here.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..data.splits import to_unit
from ..errors import DivergedError
from .contract import checked_loss
from .method import Method, TrainingProgress
from .optimizers import make_optimizer
from .pack_step import StackStep
from .run_data import RunData
from .precision import full_precision, training_precision


def length_buckets(lengths: Tensor, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """One epoch's batches of sentence indices [B_i], bucketed by length (as the text-VAE
    reference code, which pads nothing): the sentences sorted by length (random order within a
    length) and cut into consecutive batches of ``batch_size``, the batches in random order. A
    batch spans consecutive lengths (one or two where each length has at least ``batch_size``
    sentences, as most of PTB's), and all but one hold ``batch_size`` sentences
    (a last batch of one is merged into the one before: a batch norm needs two); ``lengths`` [N]
    on the CPU."""
    perm = torch.randperm(len(lengths), generator=generator)
    order = perm[torch.argsort(lengths[perm], stable=True)]
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2:] = [torch.cat(batches[-2:])]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def bucket_count(n: int, batch_size: int) -> int:
    """Batches per epoch of :func:`length_buckets` over ``n`` sentences."""
    batches = math.ceil(n / batch_size)
    return batches - 1 if batches > 1 and n % batch_size == 1 else batches


@torch.no_grad()
def validation_neg_elbo(method: Method, x: Tensor, generator: torch.Generator, batch_size: int = 1000) -> float:
    """Mean -ELBO at beta = 1 (full likelihood constants, one posterior sample from
    ``generator``) of the held-out ``x`` [N, *shape], in eval mode (training mode restored)."""
    was_training = method.training
    method.eval()
    try:
        model, total = method.model, 0.0
        for i in range(0, x.shape[0], batch_size):
            xb = to_unit(x[i:i + batch_size])
            mu, logvar = model.encode(xb)
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator, device=mu.device,
                                                           dtype=mu.dtype)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
            total += float((kl - model.likelihood.log_prob(model.decode_given(z, xb), xb)).sum())
        return total / x.shape[0]
    finally:
        method.train(was_training)


class Plateau:
    """Model selection and the plateau schedule on the validation split (``train.select_best`` /
    ``lr_schedule = "plateau"``) of a run alone: after every epoch the -ELBO of the held-out split
    (:func:`validation_neg_elbo`, its sample from a generator seeded by the epoch); the best
    weights kept (on the CPU). The schedule, as the lagging-encoder text code: from epoch
    ``decay_start`` on, after ``decay_patience`` epochs without a better value the learning rate
    is multiplied by ``decay_factor``, the best weights reloaded and the optimiser restarted (the
    best value is then set to the current one, as that code does); after ``max_decays`` decays
    training stops."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.best, self.best_epoch, self.best_state = math.inf, 0, None
        self.bad, self.decays, self.stopped = 0, 0, False
        self.lr = config.lr

    def after_epoch(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        """Validate after ``epoch`` (1-based) and apply the schedule; returns what the curves log."""
        method, held_out = trainer.methods[0], trainer.held_outs[0]
        value = validation_neg_elbo(method, held_out, torch.Generator(held_out.device).manual_seed(epoch))
        if value < self.best:
            self.best, self.best_epoch, self.bad = value, epoch, 0
            self.best_state = {k: v.detach().cpu().clone() if isinstance(v, Tensor) else copy.deepcopy(v)
                               for k, v in method.state_dict().items()}  # extra state may be any object
        else:
            self.bad += 1
            if self.config.lr_schedule == "plateau" and epoch >= self.config.decay_start \
                    and self.bad >= self.config.decay_patience:
                self.decays += 1
                self.lr *= self.config.decay_factor
                self.best, self.bad = value, 0
                self.restore_best(method)
                trainer.step.restart(self.lr)
                self.stopped = self.decays >= self.config.max_decays
        return {"valid_neg_elbo": value, "lr": self.lr}

    def restore_best(self, method: Method) -> None:
        if self.best_state is not None:
            method.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_state": self.best_state, "bad": self.bad,
                "decays": self.decays, "stopped": self.stopped, "lr": self.lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def extras(self) -> dict[str, Any]:
        """For the run record: the selected epoch, the decays, whether the schedule stopped training."""
        return {"selected_epoch": self.best_epoch, "best_valid_neg_elbo": self.best, "lr_decays": self.decays,
                "stopped_early": self.stopped, "final_lr": self.lr}


class OptimiserTools:
    """The :class:`~benchmark.ml.method.StepTools` a method's ``training_step`` gets: one
    optimiser over every parameter of ``method``, the run's gradient clipping, and fresh
    minibatches of ``x`` [N, *shape] (uint8 or float) drawn from ``order`` (a CPU generator).

    One optimiser with a parameter subset stepped at a time is the same as one optimiser per
    subset for Adam / AdamW: their state (moments, step count) is per parameter and a parameter
    whose gradient is None is skipped entirely.
    """

    def __init__(self, method: Method, optimizer: torch.optim.Optimizer, config: TrainConfig,
                 x: Tensor | None = None, order: torch.Generator | None = None,
                 batches: Sequence[Tensor] | None = None):
        self.method, self.optimizer, self.config, self.x, self.order = method, optimizer, config, x, order
        self.batches = batches  # this epoch's length buckets (sentences): fresh batches are drawn from them

    def step(self, loss: Tensor, params: Iterable[nn.Parameter] | None = None) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with full_precision(loss.device):
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
        if self.batches:
            index = self.batches[int(torch.randint(len(self.batches), (), generator=self.order))]
        else:
            index = torch.randperm(self.x.shape[0], generator=self.order)[:self.config.batch_size]
        return to_unit(self.x[index.to(self.x.device)])


class AloneStep:
    """The step of a run alone: one call of its method's ``training_step`` (default: loss,
    backward, clip, one step of its optimiser), with :class:`OptimiserTools` over its data ``x``
    [N, *shape] and batch order ``order``. The first step's loss parts are checked against the
    contract (:func:`benchmark.ml.contract.check_parts`)."""

    def __init__(self, method: Method, config: TrainConfig, x: Tensor, order: torch.Generator):
        self.method, self.config, self.x, self.order = method, config, x, order
        self.optimizer = make_optimizer(method.parameters(), config)
        self.checked = False

    def __call__(self, batch: Tensor, progress: TrainingProgress, buckets: Sequence[Tensor] = ()) -> dict[str, Tensor]:
        """One step on ``batch`` [1, B, *shape] (``buckets``: this epoch's length buckets, for fresh
        batches); returns the loss parts, detached, [1] each."""
        tools = OptimiserTools(self.method, self.optimizer, self.config, self.x, self.order, buckets)
        with checked_loss(self.method) if not self.checked else contextlib.nullcontext():
            parts = self.method.training_step(batch[0], progress, tools)
        self.checked = True
        return {key: torch.as_tensor(value).detach().reshape(1) for key, value in parts.items()}

    def restart(self, lr: float) -> None:
        """A fresh optimiser at ``lr`` (the plateau schedule's decay)."""
        self.optimizer = make_optimizer(self.method.parameters(), self.config, lr)

    def end_epoch(self) -> None:
        """Nothing: the method trained in place."""

    def epoch_end_of(self, k: int) -> contextlib.AbstractContextManager:
        """Where the run's ``on_epoch_end`` runs: as it is (its draws from the global RNG)."""
        return contextlib.nullcontext()

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.method.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method"])


Step = AloneStep | StackStep


def make_step(methods: Sequence[Method], config: TrainConfig, data: RunData, orders: Sequence[torch.Generator],
              noise: Sequence[torch.Generator] | None) -> Step:
    """The step of ``methods``: a run alone steps through its own ``training_step``; K >= 2 runs
    as one stack, run k's noise from ``noise[k]`` (None: generators seeded from the global RNG)."""
    if len(methods) == 1:
        return AloneStep(methods[0], config, data.run(0), orders[0])
    if noise is None:
        noise = [torch.Generator(data.device).manual_seed(int(torch.randint(2**62, ()))) for _ in methods]
    return StackStep(methods, config, noise, data, orders)


class Trainer:
    """Trains K >= 1 runs of one method and training config together, one epoch at a time.

    ``methods[k]`` is run k's model (its own initialisation), ``xs[k]`` [N, *shape] its training
    data on the training device (float32 or uint8 pixels, converted per batch with
    :func:`benchmark.data.splits.to_unit`; every run has the same N; runs handed one tensor share
    it, :class:`RunData`), ``orders[k]`` its
    batch-order generator (CPU), ``held_outs[k]`` the split its ``on_epoch_end`` gets and, in a
    pack, ``noise[k]`` the generator its sampling noise comes from (on the training device;
    None: seeded from the global RNG). A run alone draws its noise from the global RNG.

    How the K runs take a step is :attr:`step`'s business (:func:`make_step`): a run alone
    through its method's ``training_step``, K >= 2 packable runs as one stacked model
    (:mod:`benchmark.ml.pack`). A run whose epoch means are not finite is marked in
    :attr:`diverged` (its ``DivergedError``) and left out of later epochs' means; the others go
    on unchanged. The whole state round-trips through :meth:`state_dict` for checkpoints.
    """

    def __init__(self, methods: Sequence[Method], xs: Sequence[Tensor], config: TrainConfig,
                 orders: Sequence[torch.Generator], held_outs: Sequence[Tensor | None] | None = None,
                 noise: Sequence[torch.Generator] | None = None, lengths: Tensor | None = None):
        if not len(methods) == len(xs) == len(orders) >= 1:
            raise ValueError("a pack needs one method, one data tensor and one order generator per run")
        if len({x.shape for x in xs}) != 1:
            raise ValueError(f"the runs of a pack need data of one shape, got {sorted({tuple(x.shape) for x in xs})}")
        self.methods, self.config, self.orders = list(methods), config, list(orders)
        self.held_outs = list(held_outs) if held_outs is not None else [None] * len(methods)
        self.size = len(self.methods)
        self.n = xs[0].shape[0]
        self.lengths = lengths.cpu() if lengths is not None else None  # sentences: length-bucketed batches
        validated = config.lr_schedule == "plateau" or config.select_best
        if self.size > 1 and (lengths is not None or validated):
            raise ValueError("a pack trains its runs on shared batches with one schedule: length buckets, the "
                             "plateau schedule and model selection are for runs alone")
        if validated and self.held_outs[0] is None:
            raise ValueError("lr_schedule = plateau and select_best decide on a validation split, and this run has "
                             "none: use a data set with one")
        self.plateau = Plateau(config) if validated else None
        self.epoch_batches: list[Tensor] = []
        self.steps_per_epoch = (bucket_count(self.n, config.batch_size) if self.lengths is not None
                                else math.ceil(self.n / config.batch_size))
        self.total_steps = self.steps_per_epoch * config.epochs
        self.data = RunData(xs)
        self.step = make_step(self.methods, config, self.data, self.orders, noise)
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.step.optimizer, T_max=self.total_steps)
                          if config.lr_schedule == "cosine" else None)
        self.epoch = 0  # epochs completed
        self.steps = 0  # optimiser steps taken
        self.diverged: dict[int, DivergedError] = {}  # run index -> how it diverged

    @property
    def done(self) -> bool:
        return self.epoch >= self.config.epochs or (self.plateau is not None and self.plateau.stopped)

    def finish(self) -> dict[str, Any]:
        """After training: the selected weights back in place (``select_best``); returns what the
        run record keeps of the schedule (empty without one)."""
        if self.plateau is None:
            return {}
        if self.config.select_best:
            self.plateau.restore_best(self.methods[0])
        return self.plateau.extras()

    def _epoch_indices(self) -> list[Tensor]:
        """This epoch's batches: example indices [K, B_i] per batch (run k's row from its own
        permutation, or the length buckets of a run alone, :attr:`epoch_batches`)."""
        if self.lengths is not None:
            self.epoch_batches = length_buckets(self.lengths, self.config.batch_size, self.orders[0])
            return [b.to(self.data.device).unsqueeze(0) for b in self.epoch_batches]
        perms = torch.stack([torch.randperm(self.n, generator=g) for g in self.orders]).to(self.data.device)
        return [perms[:, start:start + self.config.batch_size] for start in range(0, self.n, self.config.batch_size)]

    def run_epoch(self) -> list[dict[str, float] | None]:
        """One pass over each run's data; returns per run the example-weighted mean of every
        loss part (None for a run that has diverged, now or before)."""
        for m in self.methods:
            m.train()
        sums: dict[str, Tensor] = {}
        for index in self._epoch_indices():
            progress = TrainingProgress(self.epoch, self.steps, self.total_steps)
            with training_precision(self.config.precision, self.data.device):  # one region per step (autocast's cache)
                parts = self.step(to_unit(self.data.batch(index)), progress, self.epoch_batches)
            if self.scheduler is not None:
                self.scheduler.step()
            self.steps += 1
            for key, value in parts.items():  # [K] each
                value = value.float() * index.shape[1]
                sums[key] = sums[key] + value if key in sums else value
        self.epoch += 1
        out: list[dict[str, float] | None] = []
        for k in range(self.size):
            means = {key: float(value[k]) / self.n for key, value in sums.items()}
            if k not in self.diverged and not all(math.isfinite(v) for v in means.values()):
                self.diverged[k] = DivergedError(self.epoch - 1, self.steps, means)
            out.append(None if k in self.diverged else means)
        self.step.end_epoch()
        for k, m in enumerate(self.methods):
            if k not in self.diverged:
                with self.step.epoch_end_of(k):
                    m.on_epoch_end(self.epoch - 1, self.held_outs[k])
        if self.plateau is not None and out[0] is not None:
            out[0].update(self.plateau.after_epoch(self, self.epoch))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step.state_dict(), "optimizer": self.step.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "orders": [g.get_state() for g in self.orders], "epoch": self.epoch, "steps": self.steps,
                "diverged": {k: (e.epoch, e.step, e.parts) for k, e in self.diverged.items()},
                "plateau": None if self.plateau is None else self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step.load_state_dict(state["step"])
        for g, s in zip(self.orders, state["orders"]):
            g.set_state(s)
        self.diverged = {int(k): DivergedError(*v) for k, v in state["diverged"].items()}
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])
            self.step.restart(self.plateau.lr)
        self.step.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.steps = state["epoch"], state["steps"]
