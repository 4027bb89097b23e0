"""Cyclical KL annealing (Fu et al. 2019): the warm-up of KL annealing repeated M times."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from benchmark.plugin import Method, ModelConfig, TrainingProgress, make_schedule, register_method, setting


@dataclass
class CyclicalConfig:
    """Cyclical annealing's schedule."""

    beta_max: float = setting(1.0, "[0, inf)", doc="KL weight reached in each cycle and held until the cycle ends (1: the ELBO)")
    cycles: int = setting(4, "[1, inf)", doc="number of cycles M the run is split into (Fu et al.: 4); each starts again at beta = 0")
    ratio: float = setting(0.5, "(0, 1]", doc="fraction R of each cycle over which beta rises linearly from 0 (Fu et al.: 0.5); "
                                           "it holds at beta_max for the rest")


@register_method
class CyclicalAnnealing(Method):
    """Cyclical annealing (Fu et al. 2019): rec + beta(t) * KL, beta rising 0 -> beta_max over the first R of each of M cycles."""

    name = "cyclical"
    packable = True
    Config = CyclicalConfig

    def __init__(self, config: CyclicalConfig, model_config: ModelConfig):
        super().__init__(config, model_config)
        self.beta_schedule = make_schedule("cyclical", config.beta_max, cycles=config.cycles, ratio=config.ratio)

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor | float]:
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        beta = self.beta_schedule(progress)
        return {"loss": rec + beta * kl, "rec": rec, "kl": kl, "beta": beta}
