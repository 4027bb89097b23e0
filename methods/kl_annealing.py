"""KL annealing (Bowman et al. 2016): the KL weight rises from a small value to 1 over a warm-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from benchmark.plugin import Method, ModelConfig, TrainingProgress, make_schedule, register_method, setting

Shape = Literal["linear", "sigmoid"]


@dataclass
class KLAnnealingConfig:
    """KL annealing's warm-up."""

    schedule: Shape = setting("linear", doc="shape of the rise: linear (later work, e.g. He et al. 2019; the default) or "
                                            "sigmoid (Bowman et al. 2016's logistic, rescaled to start and end exactly)")
    beta_start: float = setting(0.0, "[0, inf)", doc="KL weight at the first step (0: Bowman et al.; He et al. 2019 start at 0.1)")
    beta_max: float = setting(1.0, "[0, inf)", doc="KL weight at the end of the warm-up and after it (1: the ELBO)")
    warmup: float = setting(0.5, "(0, 1]", doc="fraction of the run over which the weight rises (0.5: the first half, Fu et "
                                             "al. 2019's monotonic baseline; He et al.'s 10 warm-up epochs are 1.0 of a "
                                             "10-epoch run)")
    steepness: float = setting(10.0, "(0, 100]", doc="sigmoid only: slope of the logistic at the warm-up's midpoint, in "
                                                   "units of the warm-up")


@register_method
class KLAnnealing(Method):
    """KL annealing (Bowman et al. 2016): rec + beta(t) * KL, beta rising from beta_start to beta_max over the warm-up."""

    name = "kl-annealing"
    packable = True
    Config = KLAnnealingConfig

    def __init__(self, config: KLAnnealingConfig, model_config: ModelConfig):
        super().__init__(config, model_config)
        options = {"start": config.beta_start, "duration": config.warmup}
        if config.schedule == "sigmoid":
            options["steepness"] = config.steepness
        self.beta_schedule = make_schedule(config.schedule, config.beta_max, **options)

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor | float]:
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        beta = self.beta_schedule(progress)
        return {"loss": rec + beta * kl, "rec": rec, "kl": kl, "beta": beta}
