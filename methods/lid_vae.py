"""LID-VAE (Wang et al. 2021) and IL-LID-VAE (Kinoshita et al. 2023): injective Brenier-map
decoders, the second with a guaranteed inverse-Lipschitz constant L. On text (an LSTM arch), the
LID authors' sequential variant (LIDSVAE): an LSTM state that never sees z, and at every step the
logits grad G2(Bmat grad G1([h_t; z])), so z reaches them only through the injective path."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from torch import nn

from benchmark.plugin import GridError
from benchmark.plugin import ICNNInit, LIDDecoder, LIDSequenceDecoder, arch_kind, architecture
from benchmark.plugin import Method, TrainingProgress, register_method
from benchmark.plugin import ModelConfig
from benchmark.plugin import make_schedule, setting


@dataclass
class LIDVAEConfig:
    """LID-VAE's KL weight and its ICNNs' shape, lift and initialisation."""

    beta: float = setting(1.0, "[0, inf)", doc="weight of the KL term")
    hidden_latent: int = setting(512, "[1, inf)", doc="width of the latent-space ICNN F1")
    hidden_data: int = setting(512, "[1, inf)", doc="width of the data-space ICNN F2 (it has D x width input weights per "
                                                  "layer)")
    num_layers: int = setting(2, "[1, inf)", doc="hidden layers of each ICNN")
    trainable_lift: bool = setting(False, doc="learn the lift Bmat (singular values clamped to [lift_s_min, lift_s_max]) "
                                              "instead of the fixed zero padding [I; 0]")
    lift_s_min: float = setting(1.0, "(0, inf)", doc="lower clamp of a trainable lift's singular values (its guaranteed "
                                                   "sigma_min)")
    lift_s_max: float = setting(10.0, "(0, inf)", doc="upper clamp of a trainable lift's singular values")
    icnn_init: ICNNInit = setting(
        "fan-in", added="ICNN init as a hyperparameter",
        doc="the ICNNs' non-negative weights at init: fan-in (W from the input size and width, so each Brenier map's "
            "Jacobian starts at scale ~icnn_init_gain, like an MLP's), reference (log W = -4, the public "
            "reimplementations), inverse-width (W = 1/width: a decoder constant in z at init, kept to reproduce old "
            "numbers)")
    icnn_init_gain: float = setting(1.0, "(0, inf)", added="ICNN init as a hyperparameter",
                                    doc="fan-in: Jacobian scale of each map at init (the decoder's scales as its "
                                        "square); other schemes: a factor on W")


@register_method
class LIDVAE(Method):
    """LID-VAE (Wang et al. 2021): injective decoder grad F2(Bmat grad F1(z)); rec + beta * KL."""

    name = "lid-vae"
    packable = True
    pack_scalars = ("beta",)
    Config = LIDVAEConfig

    def build_decoder(self, decoder: nn.Module, shape) -> LIDDecoder | LIDSequenceDecoder:
        config, model_config = self.config, self.model_config
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
    """The fields of LIDVAEConfig, and the inverse-Lipschitz constant L with its schedule."""

    L: float = setting(0.5, "[0, inf)", doc="inverse-Lipschitz constant (the schedule's final value); 0 gives LID-VAE")
    il_split: Literal["sqrt", "per-map"] = setting("sqrt", doc="sqrt (lam1 = lam2 = sqrt(L / sigma_min), so the decoder is "
                                                               "L-inverse-Lipschitz) or per-map (lam1 = lam2 = L as in the "
                                                               "reference code: overall L^2 sigma_min)")
    L_schedule: str = setting("constant", doc="constant (default) or any schedule of benchmark.ml.schedules, e.g. decay")
    L_schedule_options: dict = setting(factory=dict, doc="that schedule's options, e.g. {start = 2.0} for decay from 2.0 "
                                                         "to L")

    def __post_init__(self) -> None:
        if self.L_schedule_options.get("start", 0.0) < 0:
            raise GridError("il-lid-vae: L_schedule_options.start must be >= 0 (as L); raise it")


@register_method
class ILLIDVAE(LIDVAE):
    """IL-LID-VAE (Kinoshita et al. 2023): LID-VAE with an L-inverse-Lipschitz decoder."""

    name = "il-lid-vae"
    Config = ILLIDVAEConfig
    pack_scalars = ("beta", "L")

    def __init__(self, config: ILLIDVAEConfig, model_config: ModelConfig):
        super().__init__(config, model_config)
        self.L_schedule = make_schedule(config.L_schedule, config.L, **config.L_schedule_options)

    def build_decoder(self, decoder: nn.Module, shape) -> LIDDecoder | LIDSequenceDecoder:
        """LID-VAE's decoder, its strong convexities set for the schedule's first L."""
        decoder = super().build_decoder(decoder, shape)
        self._set_L(decoder, self.L_schedule(TrainingProgress(epoch=0, step=0, total_steps=1)))
        return decoder

    def per_map_constant(self, L: float | Tensor, sigma_min: float) -> float | Tensor:
        """lam1 = lam2 for an overall constant ``L`` under ``il_split`` (``sigma_min``: the lift's);
        ``L`` a float (a run alone) or a 0-d tensor (each run's, in a pack)."""
        if self.config.il_split == "per-map":
            return L
        return (L / sigma_min).sqrt() if isinstance(L, Tensor) else math.sqrt(L / sigma_min)

    def _set_L(self, decoder: LIDDecoder | LIDSequenceDecoder, L: float | Tensor) -> None:
        lam = self.per_map_constant(L, decoder.lift.sigma_min)
        decoder.set_strong_convexity(lam, lam)

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor | float]:
        L = self.L_schedule(progress)
        self._set_L(self.model.decoder, L)
        return {**super().loss(x, progress), "L": L}

    def record_extras(self) -> dict[str, Any]:
        return {**super().record_extras(), "il_split": self.config.il_split}
