"""Skip-VAE (Dieng et al. 2019): the latent feeds every layer of the decoder, so the decoder
cannot ignore z without paying in reconstruction. On an LSTM decoder (the setting it was
introduced for), z enters every step's input (as in the plain text VAE) and every step's output
layer: the vocabulary layer reads [h_t; z]."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from benchmark.plugin import Method, ModelConfig, TrainingProgress, arch_kind, register_method, sequence_decoder
from benchmark.plugin import setting

AFFINE = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
SKIP_ARCHS = ("mlp", "mlp-shallow", "mlp-deep", "conv", "conv28", "conv64", "lstm", "lstm-ptb", "lstm-yahoo",
              "lstm-small")


@dataclass
class SkipVAEConfig:
    """Skip-VAE's skip paths."""

    skip_output: bool = setting(True, doc="also feed z into the output layer (Dieng et al.: every layer of the generative "
                                          "model; false: the hidden layers only)")


def _leaves(module: nn.Module) -> list[nn.Module]:
    """The layers of a decoder made of (nested) ``nn.Sequential`` containers, in order."""
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaves(child)]
    if any(True for _ in module.children()):
        raise ValueError(f"skip-vae: cannot see inside the decoder layer {type(module).__name__}: "
                         f"it needs a decoder of nested nn.Sequential layers")
    return [module]


def _skip_map(layer: nn.Module, latent_dim: int) -> nn.Linear:
    """Linear(d, the layer's input width or channels), no bias, initialised as the z columns of
    the layer applied to [h; z] would be: uniform in +-1/sqrt(fan-in of h + d), where a
    convolution's fan-in counts its kernel taps (torch's default for the layer's own weight is
    +-1/sqrt(fan-in of h))."""
    if isinstance(layer, nn.Linear):
        width, fan_in = layer.in_features, layer.in_features + latent_dim
    else:
        taps = math.prod(layer.kernel_size)
        width, fan_in = layer.in_channels, (layer.in_channels + latent_dim) * taps
    skip = nn.Linear(latent_dim, width, bias=False)
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(skip.weight, -bound, bound)
    return skip


class SkipDecoder(nn.Module):
    """The architecture's decoder with a skip path from z into the input of every affine layer
    after the first: a Linear(d, n_in) added to a linear layer's input, or a Linear(d, C_in)
    broadcast over the feature map (a 1x1 map of z tiled spatially) added to a convolution's
    input. ``W h + U z`` is the layer applied to the concatenation [h; z] (Dieng et al.'s form).
    The main path keeps the architecture's layers and initialisation."""

    def __init__(self, decoder: nn.Module, latent_dim: int, skip_output: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(_leaves(decoder))
        affine = [i for i, layer in enumerate(self.layers) if isinstance(layer, AFFINE)]
        targets = affine[1:] if skip_output else affine[1:-1]
        if not targets:
            raise ValueError("skip-vae: the decoder has no layer after its first to feed z into")
        self.skips = nn.ModuleDict({str(i): _skip_map(self.layers[i], latent_dim) for i in targets})

    def forward(self, z: Tensor) -> Tensor:
        h = z
        for i, layer in enumerate(self.layers):
            skip = self.skips[str(i)] if str(i) in self.skips else None
            if skip is not None:
                u = skip(z)
                h = h + (u if h.dim() == 2 else u[:, :, None, None])
            h = layer(h)
        return h


def skip_problem(model_config: ModelConfig, skip_output: bool) -> str | None:
    """Why the architecture of ``model_config`` has no layer for z to skip into, or None."""
    arch, options = model_config.arch, model_config.options
    if arch not in SKIP_ARCHS:
        return f"arch {arch!r} has no skip decoder; use one of {', '.join(SKIP_ARCHS)}"
    if arch_kind(model_config) == "sequence":
        return None if skip_output else ("on an LSTM decoder the skip path is z into every step's output layer: "
                                         "skip_output = false leaves the plain text VAE; set it true")
    if arch.startswith("conv"):
        return None  # FC, FC, then one transposed convolution per channel entry: always >= 3 layers
    hidden = {"mlp": len(options.get("hidden", [512, 512])), "mlp-shallow": 1, "mlp-deep": options.get("depth", 4)}[arch]
    if hidden == 0:
        return "an mlp without hidden layers has no layer after its first to feed z into; give it hidden layers"
    if hidden == 1 and not skip_output:
        return "with skip_output = false, a decoder with one hidden layer has no layer to skip into; set skip_output = true"
    return None


@register_method
class SkipVAE(Method):
    """Skip-VAE (Dieng et al. 2019): z also enters every decoder layer through its own linear map; rec + KL."""

    name = "skip-vae"
    packable = True
    Config = SkipVAEConfig
    requires = (f"arch {', '.join(SKIP_ARCHS)}: an MLP with at least one hidden decoder layer (two with "
                f"skip_output = false), any conv, or an LSTM (z into every step's output; skip_output = true)")

    def check_model(self) -> str | None:
        return skip_problem(self.model_config, self.config.skip_output)

    def build_decoder(self, decoder: nn.Module, shape) -> nn.Module:
        if arch_kind(self.model_config) == "sequence":
            return sequence_decoder(shape, self.model_config, z_output=True)  # the skip path is built in
        return SkipDecoder(decoder, self.model_config.latent_dim, self.config.skip_output)

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor]:
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {"loss": rec + kl, "rec": rec, "kl": kl}
