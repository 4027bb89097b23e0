"""The LSTM language model: the text VAE's decoder without z, the baseline every text VAE's NLL is
compared against (a VAE whose NLL is not below it gains nothing from its latent)."""

from __future__ import annotations

from torch import Tensor, nn

from benchmark.plugin import Method, PriorEncoder, TrainingProgress, arch_kind, register_method
from benchmark.plugin import sequence_decoder


@register_method
class LanguageModel(Method):
    """LSTM language model (the baseline of text VAEs): the decoder without z, trained on the exact NLL."""

    name = "lstm-lm"
    requires = "an LSTM arch (text data)"

    def check_model(self) -> str | None:
        if arch_kind(self.model_config) != "sequence":
            return "a language model reads sentences: use an LSTM arch on a text data set"
        return None

    def build_decoder(self, decoder: nn.Module, shape) -> nn.Module:
        return sequence_decoder(shape, self.model_config, z_input=False, z_init=False)

    def build_encoder(self, encoder: nn.Module) -> nn.Module:
        return PriorEncoder(self.model_config.latent_dim)  # q(z|x) = p(z): KL, AU and MI are 0, the IW-NLL exact

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor]:
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {"loss": rec + kl, "rec": rec, "kl": kl}
