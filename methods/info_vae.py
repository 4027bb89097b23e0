"""InfoVAE (Zhao et al. 2019) with the MMD divergence: rec + (1 - alpha) KL + (alpha + lambda - 1) MMD."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from benchmark.plugin import GridError, Method, TrainingProgress, register_method, setting

Kernel = Literal["gaussian", "imq"]
Estimator = Literal["unbiased", "biased"]


@dataclass
class InfoVAEConfig:
    """InfoVAE's weights and MMD estimate."""

    alpha: float = setting(1.0, "(-inf, 1]", doc="InfoVAE's alpha: the KL term is weighted 1 - alpha (alpha = 1: no KL, "
                                               "the MMD-VAE)")
    lam: float = setting(1000.0, "(0, inf)", doc="InfoVAE's lambda: the MMD term is weighted alpha + lambda - 1; it must "
                                               "be of the order of the data dimension to matter against a reconstruction "
                                               "summed over it (Zhao et al.'s tutorial code: a per-pixel mean "
                                               "reconstruction with MMD weight 1, i.e. lam = 784 here on 28x28)")
    kernel: Kernel = setting("gaussian", doc="gaussian exp(-||a - b||^2 / c) or imq c / (c + ||a - b||^2) (Tolstikhin et "
                                             "al.'s inverse multiquadratic)")
    bandwidth: float = setting(1.0, "(0, inf)", doc="c = 2 * latent_dim * bandwidth (1: the mean squared distance of two "
                                                  "prior draws; Zhao et al.'s tutorial code is gaussian with bandwidth "
                                                  "latent_dim / 2)")
    estimator: Estimator = setting("unbiased", doc="unbiased (U-statistic without the diagonal terms, mean 0 for identical "
                                                   "distributions) or biased (V-statistic with them, as the tutorial code)")

    def __post_init__(self) -> None:
        if self.alpha + self.lam - 1 < 0:
            raise GridError(f"info-vae: the MMD weight alpha + lam - 1 = {self.alpha + self.lam - 1:g} is negative; "
                            f"raise lam")


def mmd(a: Tensor, b: Tensor, kernel: Kernel = "gaussian", bandwidth: float = 1.0,
        estimator: Estimator = "unbiased") -> Tensor:
    """Squared maximum mean discrepancy between the samples ``a`` [N, d] and ``b`` [M, d]
    (Gretton et al. 2012) with the kernel of :class:`InfoVAEConfig`; 0-dim tensor."""
    c = 2.0 * a.shape[-1] * bandwidth

    def gram(u: Tensor, v: Tensor) -> Tensor:
        distance = (u[:, None, :] - v[None, :, :]).square().sum(-1)  # [N, M], exact (no cdist shortcut)
        return torch.exp(-distance / c) if kernel == "gaussian" else c / (c + distance)

    kaa, kbb, kab = gram(a, a), gram(b, b), gram(a, b)
    if estimator == "biased":
        return kaa.mean() + kbb.mean() - 2 * kab.mean()
    n, m = a.shape[0], b.shape[0]
    off_a = (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
    off_b = (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
    return off_a + off_b - 2 * kab.mean()


@register_method
class InfoVAE(Method):
    """InfoVAE (Zhao et al. 2019), MMD: rec + (1 - alpha) KL + (alpha + lam - 1) MMD(q(z), p(z)) on the batch's posterior samples."""

    name = "info-vae"
    packable = True
    Config = InfoVAEConfig

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor | float]:
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        prior = torch.randn_like(out.z)
        c = self.config
        divergence = mmd(out.z, prior, c.kernel, c.bandwidth, c.estimator)
        loss = rec + (1 - c.alpha) * kl + (c.alpha + c.lam - 1) * divergence
        return {"loss": loss, "rec": rec, "kl": kl, "mmd": divergence}
