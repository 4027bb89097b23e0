"""LID-VAE (Wang et al. 2021) and IL-LID-VAE (Kinoshita et al. 2023): injective Brenier-map
decoders, the second with a guaranteed inverse-Lipschitz constant L. On text (an LSTM arch), the
LID authors' sequential variant (LIDSVAE): an LSTM state that never sees z, and at every step the
logits grad G2(Bmat grad G1([h_t; z])), so z reaches them only through the injective path."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor

from benchmark.plugin import added_field
from benchmark.plugin import GridError
from benchmark.plugin import ICNNInit, LIDDecoder, LIDSequenceDecoder, arch_kind, architecture
from benchmark.plugin import Method, TrainingProgress, register_method
from benchmark.plugin import VAE, ModelConfig
from benchmark.plugin import make_schedule


@dataclass
class LIDVAEConfig:
    """beta: weight of the KL term.
    hidden_latent: width of the latent-space ICNN F1.
    hidden_data: width of the data-space ICNN F2 (it has D x width input weights per layer).
    num_layers: hidden layers of each ICNN.
    trainable_lift: learn the lift Bmat (singular values clamped to [lift_s_min, lift_s_max]) instead of the fixed zero padding [I; 0].
    lift_s_min: lower clamp of a trainable lift's singular values (its guaranteed sigma_min).
    lift_s_max: upper clamp of a trainable lift's singular values.
    icnn_init: the ICNNs' non-negative weights at init: fan-in (W from the input size and width, so each Brenier map's Jacobian starts at scale ~icnn_init_gain, like an MLP's), reference (log W = -4, the public reimplementations), inverse-width (W = 1/width: a decoder constant in z at init, kept to reproduce old numbers).
    icnn_init_gain: fan-in: Jacobian scale of each map at init (the decoder's scales as its square); other schemes: a factor on W.
    """

    beta: float = 1.0
    hidden_latent: int = 512
    hidden_data: int = 512
    num_layers: int = 2
    trainable_lift: bool = False
    lift_s_min: float = 1.0
    lift_s_max: float = 10.0
    icnn_init: ICNNInit = added_field("fan-in", "ICNN init as a hyperparameter")
    icnn_init_gain: float = added_field(1.0, "ICNN init as a hyperparameter")

    def __post_init__(self) -> None:
        if self.icnn_init not in ("fan-in", "reference", "inverse-width"):
            raise GridError(f"icnn_init = {self.icnn_init!r}; valid: fan-in, reference, inverse-width")
        if not self.icnn_init_gain > 0:
            raise GridError(f"icnn_init_gain must be > 0, got {self.icnn_init_gain}")


@register_method
class LIDVAE(Method):
    """LID-VAE (Wang et al. 2021): injective decoder grad F2(Bmat grad F1(z)); rec + beta * KL."""

    name = "lid-vae"
    packable = True
    pack_scalars = ("beta",)
    Config = LIDVAEConfig
    ranges = {"beta": "[0, inf)", "hidden_latent": "[1, inf)", "hidden_data": "[1, inf)", "num_layers": "[1, inf)",
              "lift_s_min": "(0, inf)", "lift_s_max": "(0, inf)", "icnn_init_gain": "(0, inf)"}

    @classmethod
    def build_decoder(cls, config: LIDVAEConfig, shape, model_config: ModelConfig) -> LIDDecoder | LIDSequenceDecoder:
        icnn = dict(hidden_latent=config.hidden_latent, hidden_data=config.hidden_data, num_layers=config.num_layers,
                    trainable_lift=config.trainable_lift, s_min=config.lift_s_min, s_max=config.lift_s_max,
                    init=config.icnn_init, gain=config.icnn_init_gain)
        if arch_kind(model_config) == "sequence":
            arch = architecture(model_config)
            return LIDSequenceDecoder(shape.vocab_size, arch.embed, arch.hidden, model_config.latent_dim,
                                      dropout_in=arch.dropout_in, dropout_out=arch.dropout_out, lstm_init=arch.init,
                                      **icnn)
        return LIDDecoder(model_config.latent_dim, shape, **icnn)

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor | float]:
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {"loss": rec + self.config.beta * kl, "rec": rec, "kl": kl}

    def record_extras(self) -> dict[str, Any]:
        decoder: LIDDecoder = self.model.decoder
        return {"lam_per_map": float(decoder.latent_map.strong_convexity), "L_total": decoder.inverse_lipschitz}


@dataclass
class ILLIDVAEConfig(LIDVAEConfig):
    """The fields of LIDVAEConfig, and:
    L: inverse-Lipschitz constant (the schedule's final value); 0 gives LID-VAE.
    il_split: sqrt (lam1 = lam2 = sqrt(L / sigma_min), so the decoder is L-inverse-Lipschitz) or per-map (lam1 = lam2 = L as in the reference code: overall L^2 sigma_min).
    L_schedule: constant (default) or any schedule of benchmark.ml.schedules, e.g. decay.
    L_schedule_options: that schedule's options, e.g. {start = 2.0} for decay from 2.0 to L.
    """

    L: float = 0.5
    il_split: Literal["sqrt", "per-map"] = "sqrt"
    L_schedule: str = "constant"
    L_schedule_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.il_split not in ("sqrt", "per-map"):
            raise GridError(f"il-lid-vae: il_split = {self.il_split!r}; valid: sqrt, per-map")
        if self.L < 0 or self.L_schedule_options.get("start", 0.0) < 0:
            raise GridError("il-lid-vae: L (and a schedule's start) must be >= 0")


@register_method
class ILLIDVAE(LIDVAE):
    """IL-LID-VAE (Kinoshita et al. 2023): LID-VAE with an L-inverse-Lipschitz decoder."""

    name = "il-lid-vae"
    Config = ILLIDVAEConfig
    ranges = {**LIDVAE.ranges, "L": "[0, inf)"}

    def __init__(self, config: ILLIDVAEConfig, model: VAE):
        super().__init__(config, model)
        self.L_schedule = make_schedule(config.L_schedule, config.L, **config.L_schedule_options)
        self._set_L(self.L_schedule(TrainingProgress(epoch=0, step=0, total_steps=1)))

    def per_map_constant(self, L: float) -> float:
        """lam1 = lam2 for an overall constant ``L`` under ``il_split``."""
        if self.config.il_split == "per-map":
            return L
        return math.sqrt(L / self.model.decoder.lift.sigma_min)

    def _set_L(self, L: float) -> None:
        lam = self.per_map_constant(L)
        self.model.decoder.set_strong_convexity(lam, lam)

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor | float]:
        L = self.L_schedule(progress)
        self._set_L(L)
        return {**super().loss(x, progress), "L": L}

    def record_extras(self) -> dict[str, Any]:
        return {**super().record_extras(), "il_split": self.config.il_split}
