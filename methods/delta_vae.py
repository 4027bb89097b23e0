"""delta-VAE (Razavi et al. 2019), independent-prior variant: a posterior family whose KL to the
N(0, 1) prior is at least delta nats in every latent dimension, for every input."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from benchmark.plugin import GridError, Method, TrainingProgress, register_method, setting


def committed_variance(delta: float) -> float:
    """The variance s < 1 with 0.5 (s - 1 - ln s) = delta (``delta`` > 0, nats): the largest
    posterior variance whose KL to N(0, 1) is at least ``delta`` whatever the mean. Bisection
    on ln s to double precision."""
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    low, high = -(2 * delta + 2), 0.0  # g(u) = e^u - 1 - u - 2 delta: > 0 at low, < 0 at high
    for _ in range(200):
        mid = 0.5 * (low + high)
        if math.exp(mid) - 1 - mid > 2 * delta:
            low = mid
        else:
            high = mid
    return math.exp(low)  # the side where the KL is >= delta


@dataclass
class DeltaVAEConfig:
    """delta-VAE's committed rate."""

    delta: float = setting(0.1, "(0, inf)", doc="committed rate per latent dimension (nats): KL(q(z_j|x) || N(0, 1)) >= "
                                              "delta for every x and j, so >= latent_dim * delta in all")
    sigma_lower: float = setting(0.01, "(0, 1)", doc="smallest posterior standard deviation sigma_l; the largest, sigma_u < "
                                                   "1, follows from delta: 0.5 (sigma_u^2 - 1 - ln sigma_u^2) = delta")

    def __post_init__(self) -> None:
        if self.delta > 0 and self.sigma_lower > 0 and self.sigma_lower ** 2 >= committed_variance(self.delta):
            raise GridError(f"delta-vae: sigma_lower = {self.sigma_lower} is not below sigma_u = "
                            f"{math.sqrt(committed_variance(self.delta)):.4g} (from delta = {self.delta}); lower it")


class CommittedRateEncoder(nn.Module):
    """Wraps an encoder x -> (mu, raw): the log-variance becomes
    ``ln sigma_l^2 + (ln sigma_u^2 - ln sigma_l^2) * sigmoid(raw)``, strictly inside
    [ln sigma_l^2, ln sigma_u^2]; mu is unchanged. In training and in evaluation alike."""

    def __init__(self, encoder: nn.Module, logvar_low: float, logvar_high: float):
        super().__init__()
        self.encoder, self.logvar_low, self.logvar_high = encoder, logvar_low, logvar_high

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw = self.encoder(x)
        return mu, self.logvar_low + (self.logvar_high - self.logvar_low) * torch.sigmoid(raw)


@register_method
class DeltaVAE(Method):
    """delta-VAE (Razavi et al. 2019, independent-prior variant): sigma_j in [sigma_l, sigma_u], so every KL_j >= delta; rec + KL."""

    name = "delta-vae"
    guarantees = ("au", "kl")  # every KL_j >= delta by construction; AU high whatever the codes carry
    packable = True
    Config = DeltaVAEConfig
    requires = 'posterior_variance = "logvar" (the bounded log-variance is used as is)'

    def check_model(self) -> str | None:
        if self.model_config.posterior_variance != "logvar":
            return (f'posterior_variance = "{self.model_config.posterior_variance}" would map the bounded log-variance '
                    f'again; use "logvar"')
        return None

    def build_encoder(self, encoder: nn.Module) -> nn.Module:
        config = self.config
        return CommittedRateEncoder(encoder, math.log(config.sigma_lower ** 2), math.log(committed_variance(config.delta)))

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor]:
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {"loss": rec + kl, "rec": rec, "kl": kl}

    def record_extras(self) -> dict[str, Any]:
        variance = committed_variance(self.config.delta)
        return {"variant": "independent N(0, 1) prior, bounded posterior variance",
                "sigma_lower": self.config.sigma_lower, "sigma_upper": math.sqrt(variance),
                "committed_kl_per_dim": 0.5 * (variance - 1 - math.log(variance))}
