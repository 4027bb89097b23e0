"""How a pack of K >= 2 runs takes one optimisation step (:class:`StackStep`): the runs' losses in
one vectorised call over their stacked parameters (:class:`benchmark.ml.pack.StackedMethods`),
then one optimiser step over the stack. A method that takes over its step (``training_step``:
several optimiser steps, parameter subsets, fresh minibatches) packs when it also writes that step
for a pack (``pack_training_step``), against :class:`PackTools`: the same tools with a run axis,
where each run may sit a step out. Only packs reach this module
(``benchmark.planning.code_key.PACKED_ONLY``): a change here leaves runs trained alone done.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..data.splits import to_unit
from .method import Method, TrainingProgress
from .optimizers import RunwiseOptimizer, make_optimizer
from .pack import StackedMethods, clip_per_run, packs_its_own_step
from .precision import full_precision
from .run_data import RunData


class PackTools:
    """What a method's ``pack_training_step`` uses to train the K runs of a pack: the runs'
    losses (:meth:`loss`), optimiser steps of every run or of some runs and parameter subsets
    (:meth:`step`), and fresh minibatches drawn per run (:meth:`fresh_batches`). A run that sits
    a step out (``active[k]`` False) keeps its parameters, optimiser state (step count included),
    buffers, sampling-noise stream and batch-order stream untouched, as if the step had not
    happened to it: so each run gets the steps it takes alone."""

    def __init__(self, stack: StackedMethods, optimizer: torch.optim.Optimizer, config: TrainConfig, data: RunData,
                 orders: Sequence[torch.Generator]):
        self.stack, self.optimizer, self.config, self.data, self.orders = stack, optimizer, config, data, list(orders)
        self.runs = len(self.orders)

    def loss(self, x: Tensor, progress: TrainingProgress, active: Sequence[bool] | None = None) -> dict[str, Tensor]:
        """Every run's loss parts, [K] each, for ``x`` [K, B, *shape]; a run not ``active`` draws
        no noise and its buffers are left as they were (its parts are computed, and meaningless)."""
        if active is None or all(active):
            return self.stack.loss(x, progress)
        kept = {name: b.clone() for name, b in self.stack.buffers.items()}
        parts = self.stack.loss(x, progress, active)
        with torch.no_grad():
            idle = torch.tensor([not a for a in active], device=x.device)
            for name, b in self.stack.buffers.items():
                b.copy_(torch.where(idle.view(-1, *[1] * (b.dim() - 1)), kept[name], b))
        return parts

    def parameters(self, prefix: str = "") -> list[Tensor]:
        """The stacked parameters [K, ...] of the submodule ``prefix`` of the method (e.g.
        ``"model.encoder"``; empty: every parameter)."""
        return [p for name, p in self.stack.params.items() if not prefix or name.startswith(prefix + ".")]

    def step(self, loss: Tensor, stepping: Sequence[tuple[Sequence[Tensor], Sequence[bool]]] | None = None) -> None:
        """zero_grad, ``loss.sum().backward()`` (``loss`` [K]), each run's gradient clipped by its own
        norm over every parameter (``train.grad_clip``), then one optimiser step: of every parameter
        in every run (``stepping`` None), else of each ``(parameters, active)`` pair's parameters
        in the runs ``active`` marks (a parameter in no pair does not step; needs a
        :class:`~benchmark.ml.optimizers.RunwiseOptimizer`)."""
        self.optimizer.zero_grad(set_to_none=True)
        with full_precision(loss.device):
            loss.sum().backward()
        if self.config.grad_clip > 0:
            clip_per_run(self.stack.parameters(), self.config.grad_clip)
        if stepping is not None:
            self.optimizer.select({p: list(active) for params, active in stepping for p in params})
        self.optimizer.step()

    def fresh_batches(self, active: Sequence[bool]) -> Tensor:
        """A minibatch per run [K, batch_size, *shape] (float, in [0, 1]) drawn at random without
        replacement from run k's training examples with its batch-order generator, as
        ``StepTools.fresh_batch`` draws it alone; a run not ``active`` draws nothing (its row
        holds examples it would not train on)."""
        size = min(self.config.batch_size, self.data.run(0).shape[0])
        index = torch.zeros(self.runs, size, dtype=torch.long)
        for k, generator in enumerate(self.orders):
            if active[k]:
                index[k] = torch.randperm(self.data.run(k).shape[0], generator=generator)[:size]
        return to_unit(self.data.batch(index.to(self.data.device)))


class StackStep:
    """The step of a pack (:class:`benchmark.ml.pack.StackedMethods`): every run's loss in one
    vectorised call, ``sum(loss).backward()`` (run k's parameters get run k's gradient only), each
    run's gradient clipped by its own norm, one optimiser step over the stack (Adam's state is per
    element, so each run keeps its own). A method with its own ``pack_training_step`` takes the
    step itself, with :class:`PackTools` and a :class:`~benchmark.ml.optimizers.RunwiseOptimizer`.
    ``noise[k]``: run k's sampling-noise generator; ``data`` and ``orders[k]``: run k's training
    examples and batch-order generator (for fresh minibatches)."""

    def __init__(self, methods: Sequence[Method], config: TrainConfig, noise: Sequence[torch.Generator],
                 data: RunData, orders: Sequence[torch.Generator]):
        self.config, self.data, self.orders = config, data, list(orders)
        self.stack = StackedMethods(methods, noise)
        self.own_step = packs_its_own_step(type(methods[0]))
        self.restart(config.lr)

    def __call__(self, batch: Tensor, progress: TrainingProgress, buckets: Sequence[Tensor] = ()) -> dict[str, Tensor]:
        """One step on ``batch`` [K, B, *shape] (run k's batch is ``batch[k]``; ``buckets``: unused,
        a pack has none); returns the loss parts, detached, [K] each."""
        if self.own_step:
            parts = self.stack.methods[0].pack_training_step(self.stack.methods, batch, progress, self.tools)
            return {key: torch.as_tensor(value, device=batch.device).detach() for key, value in parts.items()}
        parts = self.stack.loss(batch, progress)
        self.tools.step(parts["loss"])
        return {key: value.detach() for key, value in parts.items()}

    def restart(self, lr: float) -> None:
        """A fresh optimiser at ``lr``."""
        make = RunwiseOptimizer if self.own_step else make_optimizer  # runs that always step together: fused
        self.optimizer = make(self.stack.parameters(), self.config, lr)
        self.tools = PackTools(self.stack, self.optimizer, self.config, self.data, self.orders)

    def end_epoch(self) -> None:
        """Each run's slice of the stack copied into its own method."""
        self.stack.write_back()

    @contextlib.contextmanager
    def epoch_end_of(self, k: int) -> Iterator[None]:
        """Where run k's ``on_epoch_end`` runs: with the global RNG of the training device holding
        run k's noise stream, so its draws (e.g. aggressive's held-out MI) come from that stream as
        they do alone, where the global RNG is its noise stream (draws on another device than the
        training device would come from that device's shared global RNG)."""
        generator = self.stack.noise.generators[k]
        device = generator.device
        default = torch.default_generator if device.type == "cpu" else \
            torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
        saved = default.get_state()
        default.set_state(generator.get_state())
        try:
            yield
        finally:
            generator.set_state(default.get_state())
            default.set_state(saved)

    def state_dict(self) -> dict[str, Any]:
        return {"stack": self.stack.state_dict(), "methods": [_extra_state(m) for m in self.stack.methods]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stack.load_state_dict(state["stack"])
        for method, extra in zip(self.stack.methods, state.get("methods", [])):
            if extra is not None:
                method.set_extra_state(extra)


def _extra_state(method: Method) -> Any:
    """A method's own Python state (``get_extra_state``; None when it keeps none): a pack keeps
    each run's, as a run alone keeps it in its state dict."""
    return method.get_extra_state() if type(method).get_extra_state is not nn.Module.get_extra_state else None
