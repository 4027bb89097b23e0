"""The optimisers of training: one over a run's parameters (:func:`make_optimizer`), and one over
a pack's stacked parameters that steps each run on its own (:class:`RunwiseOptimizer`)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor
from torch.optim.adam import adam as adam_step
from torch.optim.sgd import sgd as sgd_step

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
    a time (aggressive inference's encoder-only steps) gets the updates it gets alone. Each step is
    torch's own (``torch.optim.adam.adam`` / ``torch.optim.sgd.sgd``, fused where :func:`make_optimizer` fuses)
    on the slices [k] of the runs that step: the arithmetic of the run alone, element for element.
    For a pack whose runs always step together :func:`make_optimizer` is the faster choice.
    """

    def __init__(self, params: Sequence[Tensor], config: TrainConfig, lr: float | None = None):
        params = list(params)
        self.kind = config.optimizer
        self.runs = params[0].shape[0]
        self.fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
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
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                mask = self.stepping.get(p, none) if self.stepping else every
                if p.grad is None or not any(mask):
                    continue
                state = self.state[p]
                if not state and self.kind != "sgd":
                    state["step"] = torch.zeros(self.runs, dtype=torch.float32, device=p.device)  # per run
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                for k in (k for k in range(self.runs) if mask[k]):
                    params.append(p[k])
                    grads.append(p.grad[k])
                    if self.kind != "sgd":
                        exp_avgs.append(state["exp_avg"][k])
                        exp_avg_sqs.append(state["exp_avg_sq"][k])
                        steps.append(state["step"][k])
            if not params:
                continue
            if self.kind == "sgd":
                sgd_step(params, grads, [None] * len(params), weight_decay=group["weight_decay"],
                         momentum=0.0, lr=group["lr"], dampening=0.0, nesterov=False, maximize=False)
                continue
            beta1, beta2 = group["betas"]
            adam_step(params, grads, exp_avgs, exp_avg_sqs, [], steps, fused=self.fused or None,
                      decoupled_weight_decay=self.kind == "adamw", amsgrad=False, beta1=beta1, beta2=beta2,
                      lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
        self.stepping = {}
