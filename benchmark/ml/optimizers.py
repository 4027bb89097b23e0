"""The optimisers of training: one over a run's parameters (:func:`make_optimizer`), and one over
a pack's stacked parameters that steps each run on its own (:class:`RunwiseOptimizer`)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from ..config import TrainConfig


def make_optimizer(params, config: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """Adam / AdamW (fused where every parameter allows it: about 1.3x faster steps on CPU,
    docs/performance.md) or plain SGD, at ``lr`` (default: the config's)."""
    params = list(params)
    lr = config.lr if lr is None else lr
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=config.weight_decay)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.optimizer]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return cls(params, lr=lr, weight_decay=config.weight_decay, fused=fused)


class RunwiseOptimizer(torch.optim.Optimizer):
    """Adam / AdamW / SGD (as :func:`make_optimizer`) over stacked parameters [K, ...] in which each
    run k steps only when it is told to: :meth:`step` takes, per parameter, which runs step now
    (:meth:`select`; default every run). A run that does not step keeps its parameters and
    moments untouched, and its own step count (Adam's bias correction, one count per run and
    parameter: what the run alone keeps per parameter), so a run that steps a parameter subset at
    a time (aggressive inference's encoder-only steps) gets the updates it gets alone. Its
    arithmetic is torch's single-tensor Adam's, per run (equal to float rounding); for a pack
    whose runs always step together :func:`make_optimizer` is the faster choice.
    """

    def __init__(self, params: Sequence[Tensor], config: TrainConfig, lr: float | None = None):
        params = list(params)
        self.kind = config.optimizer
        self.runs = params[0].shape[0]
        defaults = {"lr": config.lr if lr is None else lr, "weight_decay": config.weight_decay,
                    "betas": (0.9, 0.999), "eps": 1e-8}
        super().__init__(params, defaults)
        self.stepping: dict[Tensor, list[bool]] = {}

    def select(self, stepping: dict[Tensor, list[bool]]) -> None:
        """The next :meth:`step`'s runs, per parameter (``stepping[p][k]``: run k steps ``p``); a
        parameter left out steps in no run. Cleared by the step."""
        self.stepping = stepping

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        every, none = [True] * self.runs, [False] * self.runs
        for group in self.param_groups:
            for p in group["params"]:
                mask = self.stepping.get(p, none) if self.stepping else every
                if p.grad is None or not any(mask):
                    continue
                self._step_one(p, group, mask)
        self.stepping = {}

    def _step_one(self, p: Tensor, group: dict[str, Any], mask: list[bool]) -> None:
        lr, decay = group["lr"], group["weight_decay"]
        grad, shape = p.grad, (-1,) + (1,) * (p.dim() - 1)
        if self.kind == "sgd":
            new = p - lr * (grad + decay * p if decay else grad)
            self._put(p, new, mask, shape)
            return
        beta1, beta2 = group["betas"]
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros(self.runs, dtype=torch.float64)  # per run, on the CPU
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
        state["step"] += torch.tensor(mask, dtype=torch.float64)
        steps = state["step"].clamp(min=1)  # a run that never stepped: any finite value (not used)
        base = p.mul(1 - lr * decay) if decay and self.kind == "adamw" else p
        if decay and self.kind == "adam":
            grad = grad.add(p, alpha=decay)
        exp_avg = state["exp_avg"].lerp(grad, 1 - beta1)
        exp_avg_sq = state["exp_avg_sq"].mul(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = (lr / (1 - beta1 ** steps)).to(p.dtype).to(p.device, non_blocking=True).view(shape)
        correction = (1 - beta2 ** steps).sqrt().to(p.dtype).to(p.device, non_blocking=True).view(shape)
        new = base - step_size * exp_avg / (exp_avg_sq.sqrt() / correction + group["eps"])
        self._put(p, new, mask, shape)
        self._put(state["exp_avg"], exp_avg, mask, shape)
        self._put(state["exp_avg_sq"], exp_avg_sq, mask, shape)

    @staticmethod
    def _put(target: Tensor, value: Tensor, mask: list[bool], shape: tuple[int, ...]) -> None:
        """``target[k] = value[k]`` for the runs k that step."""
        if all(mask):
            target.copy_(value)
        else:
            target.copy_(torch.where(torch.tensor(mask).to(target.device, non_blocking=True).view(shape), value, target))
