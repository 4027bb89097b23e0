"""Free bits (Kingma et al. 2016): no KL pressure on a latent dimension (or group) below lam nats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from benchmark.plugin import Method, TrainingProgress, register_method, setting

Hinge = Literal["batch", "example"]


@dataclass
class FreeBitsConfig:
    """Free bits' floor."""

    lam: float = setting(0.25, "[0, inf)", doc="free nats per latent group: a group's KL below lam is not penalised (and "
                                              "gets no KL gradient)")
    group_size: int = setting(1, "[1, inf)", doc="latent dimensions per group (1: per dimension; Kingma et al. group the "
                                                "latents and hinge each group's summed KL); must divide latent_dim")
    hinge: Hinge = setting("batch", doc="batch (Kingma et al.: max(lam, minibatch mean of the group's KL)) or example "
                                        "(max(lam, KL) per example, then the mean: some public code)")


def free_bits_kl(mu: Tensor, logvar: Tensor, lam: float, group_size: int = 1, hinge: Hinge = "batch") -> Tensor:
    """The free-bits KL term (nats per example): with KL_bg the KL of example b's latent group g
    (``group_size`` consecutive dimensions of ``mu``, ``logvar`` [B, d]),
    ``sum_g max(lam, mean_b KL_bg)`` (``hinge = "batch"``) or ``mean_b sum_g max(lam, KL_bg)``
    (``"example"``). A clamped group contributes the constant lam: no gradient."""
    per_dim = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)  # [B, d]
    per_group = per_dim.unflatten(-1, (-1, group_size)).sum(-1)  # [B, d / group_size]
    if hinge == "batch":
        return per_group.mean(0).clamp(min=lam).sum()
    return per_group.clamp(min=lam).sum(-1).mean()


@register_method
class FreeBits(Method):
    """Free bits (Kingma et al. 2016): rec + sum over latent groups of max(lam, batch-mean KL of the group)."""

    name = "free-bits"
    guarantees = ("au", "kl")  # no KL pull below the floor: dimensions stay off the prior whatever they carry
    packable = True
    Config = FreeBitsConfig
    requires = "latent_dim divisible by group_size"

    def check_model(self) -> str | None:
        group_size, latent_dim = self.config.group_size, self.model_config.latent_dim
        if latent_dim % group_size:
            return f"group_size = {group_size} does not divide latent_dim = {latent_dim}; choose a divisor"
        return None

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor]:
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        kl_free = free_bits_kl(out.mu, out.logvar, self.config.lam, self.config.group_size, self.config.hinge)
        return {"loss": rec + kl_free, "rec": rec, "kl": kl, "kl_free_bits": kl_free}
