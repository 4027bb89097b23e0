"""The two loops the bench compares: a minimal hand-written PyTorch loop with the ``vae`` plugin's
math (the baseline) and the harness's own training loop on a real method."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from ...config import TrainConfig
from ...ml.method import build_method
from ...ml.train import Trainer
from .common import Clock, Preset, rotate


class MinimalVAE(nn.Module):
    """The ``vae`` plugin's math written out: MLP encoder -> (mu, logvar), z = mu + sigma eps,
    MLP decoder, loss = mean SSE + mean KL (gaussian likelihood, sums over pixels / latents)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], latent_dim: int):
        super().__init__()

        def stack(sizes: list[int]) -> nn.Sequential:
            layers: list[nn.Module] = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers.append(nn.Linear(a, b))
                if i < len(sizes) - 2:
                    layers.append(nn.ReLU())
            return nn.Sequential(*layers)

        self.enc = stack([in_dim, *hidden, 2 * latent_dim])
        self.dec = stack([latent_dim, *reversed(hidden), in_dim])

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        mu, logvar = self.enc(flat).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        rec = (flat - self.dec(z)).pow(2).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return rec.mean() + kl.mean()

    @classmethod
    def like(cls, model: nn.Module, preset: Preset, in_dim: int) -> "MinimalVAE":
        """Same architecture and the same initial weights as the harness's ``model``."""
        minimal = cls(in_dim, preset.hidden, preset.latent_dim)
        src = list(model.parameters())
        dst = list(minimal.parameters())
        if [p.shape for p in src] != [p.shape for p in dst]:
            raise RuntimeError("the minimal loop's MLP does not match the harness's model")
        with torch.no_grad():
            for d, s in zip(dst, src):
                d.copy_(s)
        return minimal.to(src[0].device)


def minimal_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, batch_size: int,
                  order: torch.Generator) -> float:
    """One epoch of the plain loop: permutation, slice, forward, backward, step; mean loss."""
    model.train()
    n = x.shape[0]
    perm = torch.randperm(n, generator=order).to(x.device)
    total = torch.zeros((), device=x.device)
    for start in range(0, n, batch_size):
        batch = x[perm[start:start + batch_size]]
        loss = model(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * batch.shape[0]
    return float(total) / n


def harness_method(preset: Preset, shape: tuple[int, ...], device: torch.device, name: str = "vae",
                    seed: int = 0, hyperparameters: dict[str, Any] | None = None):
    torch.manual_seed(seed)
    return build_method(name, hyperparameters or {}, preset.model_config(), shape).to(device)


def harness_epochs(method, x: Tensor, batch_size: int, order: torch.Generator, fused_adam: bool = False
                   ) -> Callable[[], Any]:
    """A callable running one more epoch of the harness's loop on ``method`` with one persistent
    optimiser (:class:`benchmark.ml.train.Trainer`; ``fused_adam``: its optimiser replaced by
    Adam's fused kernel)."""
    config = TrainConfig(epochs=10**9, batch_size=batch_size)
    trainer = Trainer([method], [x], config, [order])
    if fused_adam:
        trainer.step.optimizer = torch.optim.Adam(method.parameters(), lr=config.lr, fused=True)
    return trainer.run_epoch


def interleaved_with_harness(method, x: Tensor, batch_size: int, repeats: int, clock: Clock,
                              arms: dict[str, Callable[[int], Any]]) -> dict[str, list[float]]:
    """Run the harness's :class:`~benchmark.ml.train.Trainer` on ``method`` alone for
    ``repeats + 1`` epochs and time each of ``arms`` (callables of the repetition index) between
    its epochs.

    The harness's epoch time is one real epoch of one trainer (one optimiser, the loss-part
    sums, the divergence check)."""
    times: dict[str, list[float]] = {"harness": [], **{k: [] for k in arms}}
    trainer = Trainer([method], [x], TrainConfig(epochs=repeats + 1, batch_size=batch_size),
                      [torch.Generator().manual_seed(1)])
    while not trainer.done:
        t0 = clock()
        trainer.run_epoch()
        times["harness"].append(clock() - t0)
        for name in rotate(list(arms), trainer.epoch - 1):
            t0 = clock()
            arms[name](trainer.epoch - 1)
            times[name].append(clock() - t0)
    return times
