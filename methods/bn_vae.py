"""BN-VAE (Zhu et al. 2020): batch-normalised posterior means with a fixed scale keep every
latent dimension's expected KL at least gamma^2 / 2."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from benchmark.plugin import Method, TrainingProgress, register_method, setting


@dataclass
class BNVAEConfig:
    """BN-VAE's batch norm of the posterior means."""

    gamma: float = setting(0.5, "(0, inf)", doc="fixed scale of the normalised posterior means (Zhu et al. and their code: "
                                              "0.5; their text sweeps 0.3-0.7); E_x[KL_j] >= gamma^2 / 2")
    momentum: float = setting(0.1, "(0, 1]", doc="running-statistics momentum of the batch norm (torch's and the authors' "
                                               "code's default 0.1); evaluation uses the running statistics")


class BatchNormMeans(nn.Module):
    """Wraps an encoder x -> (mu_raw, raw_logvar): mu_j = gamma * BN(mu_raw)_j + b_j, with BN's
    batch statistics in training and running statistics in evaluation (torch's BatchNorm1d
    without affine parameters, eps 1e-5), gamma fixed and the shift b [d] learned (from 0)."""

    def __init__(self, encoder: nn.Module, latent_dim: int, gamma: float, momentum: float):
        super().__init__()
        self.encoder, self.gamma = encoder, gamma
        self.norm = nn.BatchNorm1d(latent_dim, affine=False, momentum=momentum)
        self.shift = nn.Parameter(torch.zeros(latent_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw = self.encoder(x)
        return self.gamma * self.norm(mu) + self.shift, raw


@register_method
class BNVAE(Method):
    """BN-VAE (Zhu et al. 2020): posterior means batch-normalised with fixed scale gamma and learned shift; rec + KL."""

    name = "bn-vae"
    guarantees = ("au",)  # Var_x(mu_j) = gamma^2 (> AU's threshold): every unit "active" by construction
    packable = True
    Config = BNVAEConfig

    def build_encoder(self, encoder: nn.Module) -> nn.Module:
        return BatchNormMeans(encoder, self.model_config.latent_dim, self.config.gamma, self.config.momentum)

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor]:
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {"loss": rec + kl, "rec": rec, "kl": kl}

    def record_extras(self) -> dict[str, Any]:
        """The floor, and whether the raw means kept a variance well above batch norm's eps (the
        floor is gamma^2 / 2 * v / (v + eps): dims whose running variance fell below 100 eps have
        lost at least 1% of it)."""
        norm, shift = self.model.encoder.norm, self.model.encoder.shift.detach()
        running = norm.running_var.detach()
        return {"kl_floor_per_dim": self.config.gamma ** 2 / 2, "shift_rms": float(shift.square().mean().sqrt()),
                "raw_mean_running_var_min": float(running.min()),
                "dims_near_eps": int((running < 100 * norm.eps).sum())}
