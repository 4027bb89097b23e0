"""VAE and beta-VAE: the baselines every remedy is compared against."""

from dataclasses import dataclass

from benchmark.plugin import Method, TrainingProgress, register_method, setting


@register_method
class VAE(Method):
    """Plain VAE (Kingma and Welling 2014): rec + KL, beta fixed at 1."""

    name = "vae"
    packable = True

    def loss(self, x, progress: TrainingProgress):
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {"loss": rec + kl, "rec": rec, "kl": kl}


@dataclass
class BetaVAEConfig:
    """beta-VAE's hyperparameters."""

    beta: float = setting(4.0, "[0, inf)", doc="weight of the KL term (< 1 weakens, > 1 strengthens the pull to the prior)")


@register_method
class BetaVAE(Method):
    """beta-VAE (Higgins et al. 2017): rec + beta * KL with beta swept."""

    name = "beta-vae"
    packable = True
    pack_scalars = ("beta",)
    Config = BetaVAEConfig

    def loss(self, x, progress: TrainingProgress):
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {"loss": rec + self.config.beta * kl, "rec": rec, "kl": kl}
