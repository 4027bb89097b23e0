"""Methods built small for the tests of each method's defining property (tests/methods/): 8x8
images, an MLP with one hidden layer of 32 units, 4 latent dimensions; and the per-dimension KL
they are checked with."""

from __future__ import annotations

import sys

import torch

from benchmark.config import ModelConfig
from benchmark.discovery import METHODS
from benchmark.ml.method import TrainingProgress, build_method


IMAGE = (1, 8, 8)


def module(name: str):
    """The plugin module that registers method ``name``."""
    return sys.modules[METHODS[name].__module__]


def build(name: str, seed: int = 0, shape=IMAGE, latent: int = 4, hidden=(32,), **hyperparameters):
    torch.manual_seed(seed)
    return build_method(name, hyperparameters, ModelConfig(latent_dim=latent, options={"hidden": list(hidden)}), shape)


def at(step: int, total: int) -> TrainingProgress:
    return TrainingProgress(epoch=0, step=step, total_steps=total)


def per_dim_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar)


def minimise_kl(method, x: torch.Tensor, steps: int = 150, lr: float = 3e-2) -> None:
    """Train the encoder against the KL term alone: what collapses a plain VAE's posteriors."""
    optimizer = torch.optim.Adam(method.model.encoder.parameters(), lr=lr)
    method.train()
    for _ in range(steps):
        mu, logvar = method.model.encode(x)
        optimizer.zero_grad()
        per_dim_kl(mu, logvar).sum(-1).mean().backward()
        optimizer.step()
