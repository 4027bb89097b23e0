"""Encoders, decoders and the VAE model that ties them to a likelihood.

Shapes: data ``x`` [B, *shape] (e.g. [B, 1, 28, 28] or [B, 2]); latents [B, d].
An encoder returns ``(mu, raw_logvar)``; a decoder returns likelihood parameters [B, *shape].
Architectures are registered presets with a typed options dataclass, so a grid can name one
(``arch = "mlp"``) and set its options (``hidden = [512, 512]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import PosteriorVariance, setting
from ..data.vocabulary import SequenceShape
from .likelihoods import Likelihood

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "elu": nn.ELU,
    "tanh": nn.Tanh, "silu": nn.SiLU, "softplus": nn.Softplus,
}
# The names a grid may give `activation` (checked when it is loaded, nothing built).
Activation = Literal["relu", "leaky_relu", "elu", "tanh", "silu", "softplus"]
assert set(get_args(Activation)) == set(ACTIVATIONS), "Activation must list ACTIVATIONS' names"


def mlp(sizes: list[int], activation: str, final_activation: bool = False) -> nn.Sequential:
    """Fully connected layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` in between."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if final_activation or i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """Splits a [B, 2d] output into ``(mu, raw_logvar)``, each [B, d]."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw_logvar = self.body(x).chunk(2, dim=-1)
        return mu, raw_logvar


class Reshape(nn.Module):
    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(*x.shape[:-1], *self.shape)


class Architecture:
    """What every architecture preset (a dataclass of options) provides: the ``kind`` of data it
    takes, :meth:`shape_problem` (checked when a grid is loaded, nothing built), ``build(shape,
    latent_dim) -> (encoder, decoder)`` and :meth:`model`, the VAE tying them to a likelihood."""

    kind: ClassVar[str] = "vector"  # "vector": any fixed-size example (images, 2-D points); "image"; "sequence"

    def shape_problem(self, shape: tuple[int, ...] | SequenceShape) -> str | None:
        """Why data of per-example ``shape`` cannot go through this architecture (None: it can)."""
        if isinstance(shape, SequenceShape):
            return ("it takes fixed-size examples, and a text set's sentences of token ids are none: use an LSTM "
                    "architecture (lstm, lstm-ptb, lstm-yahoo, lstm-small)")
        return None

    def model(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood,
              posterior_variance: PosteriorVariance) -> VAEModel:
        return VAEModel(encoder, decoder, likelihood, posterior_variance)


@dataclass
class MLPArch(Architecture):
    """Fully connected encoder and mirrored decoder (any data shape; flattened)."""

    hidden: list[int] = setting(valid="[1, inf)", factory=lambda: [512, 512])  # widths; [] is linear
    activation: Activation = "relu"

    def build(self, shape: tuple[int, ...], latent_dim: int) -> tuple[nn.Module, nn.Module]:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}")
        size = math.prod(shape)
        encoder = GaussianHead(nn.Sequential(
            nn.Flatten(), mlp([size, *self.hidden, 2 * latent_dim], self.activation)))
        decoder = nn.Sequential(
            mlp([latent_dim, *reversed(self.hidden), size], self.activation), Reshape(shape))
        return encoder, decoder


@dataclass
class ConvArch(Architecture):
    """Strided-convolution encoder and transposed-convolution decoder for square images.

    Each of ``channels`` halves the side (kernel 4, stride 2, padding 1), so the side must be
    divisible by ``2 ** len(channels)``; an empty list picks [32, 64] for 28x28 and
    [32, 32, 64, 64] for 64x64.
    """

    channels: list[int] = setting(valid="[1, inf)", factory=list)
    activation: Activation = "relu"
    hidden: int = setting(256, "[1, inf)")

    kind: ClassVar[str] = "image"

    def _channels(self, side: int) -> list[int]:
        return self.channels or ([32, 64] if side <= 32 else [32, 32, 64, 64])

    def shape_problem(self, shape: tuple[int, ...] | SequenceShape) -> str | None:
        """Why data of per-example ``shape`` cannot go through this architecture (None: it can);
        builds nothing, so a grid is checked when it is loaded."""
        why = super().shape_problem(shape)
        if why is not None:
            return why
        if len(shape) != 3 or shape[1] != shape[2]:
            return f"conv needs square images [C, H, H], got shape {list(shape)}"
        layers = len(self._channels(shape[1]))
        if shape[1] % 2 ** layers:
            return f"side {shape[1]} is not divisible by 2^{layers} ({layers} conv layers)"
        return None

    def build(self, shape: tuple[int, ...], latent_dim: int) -> tuple[nn.Module, nn.Module]:
        why = self.shape_problem(shape)
        if why is not None:
            raise ValueError(why)
        c, side, _ = shape
        channels = self._channels(side)
        low = side // 2 ** len(channels)
        act = ACTIVATIONS[self.activation]
        enc: list[nn.Module] = []
        for n_in, n_out in zip([c, *channels[:-1]], channels):
            enc += [nn.Conv2d(n_in, n_out, 4, 2, 1), act()]
        flat = channels[-1] * low * low
        enc += [nn.Flatten(), nn.Linear(flat, self.hidden), act(), nn.Linear(self.hidden, 2 * latent_dim)]
        dec: list[nn.Module] = [nn.Linear(latent_dim, self.hidden), act(), nn.Linear(self.hidden, flat), act(),
                                nn.Unflatten(-1, (channels[-1], low, low))]
        rev = list(reversed(channels))
        for i, (n_in, n_out) in enumerate(zip(rev, [*rev[1:], c])):
            dec.append(nn.ConvTranspose2d(n_in, n_out, 4, 2, 1))
            if i < len(rev) - 1:
                dec.append(act())
        return GaussianHead(nn.Sequential(*enc)), nn.Sequential(*dec)


def _check_positive(arch: str, **values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{arch}: {name} must be >= 1, got {value}")


@dataclass
class MLPShallowArch(Architecture):
    """One hidden layer of ``width`` units in the encoder and in the decoder (any data shape).

    The "shallow" networks of the paper's capacity comparison; latent 32 for 28x28 data by the
    grid's convention.
    """

    width: int = setting(512, "[1, inf)")
    activation: Activation = "relu"

    def build(self, shape: tuple[int, ...], latent_dim: int) -> tuple[nn.Module, nn.Module]:
        _check_positive("mlp-shallow", width=self.width)
        return MLPArch([self.width], self.activation).build(shape, latent_dim)


@dataclass
class MLPDeepArch(Architecture):
    """``depth`` hidden layers of ``width`` units in the encoder and in the decoder (any shape).

    The deeper counterpart of ``mlp-shallow`` (default 4 x 512); ``depth = 1`` is ``mlp-shallow``.
    """

    width: int = setting(512, "[1, inf)")
    depth: int = setting(4, "[1, inf)")
    activation: Activation = "relu"

    def build(self, shape: tuple[int, ...], latent_dim: int) -> tuple[nn.Module, nn.Module]:
        _check_positive("mlp-deep", width=self.width, depth=self.depth)
        return MLPArch([self.width] * self.depth, self.activation).build(shape, latent_dim)


@dataclass
class Conv28Arch(ConvArch):
    """``conv`` with the 28x28 defaults spelled out: channels [32, 64] (28 -> 14 -> 7), FC 256.

    Any square image whose side is divisible by 4 works; the channel list may be changed.
    """

    channels: list[int] = setting(valid="[1, inf)", factory=lambda: [32, 64])


@dataclass
class Conv64Arch(ConvArch):
    """``conv`` with the 64x64 defaults spelled out: channels [32, 32, 64, 64] (64 -> 4), FC 256.

    The beta-VAE image architecture (Higgins et al. 2017; Burgess et al. 2018) for 64x64 RGB
    faces; any square image whose side is divisible by 16 works.
    """

    channels: list[int] = setting(valid="[1, inf)", factory=lambda: [32, 32, 64, 64])


class VAEOutput(NamedTuple):
    """One forward pass: posterior ``mu``/``logvar`` [B, d], sample ``z`` [B, d],
    decoder ``params`` [B, *shape], per-example ``rec`` and ``kl`` [B] (nats)."""

    mu: Tensor
    logvar: Tensor
    z: Tensor
    params: Tensor
    rec: Tensor
    kl: Tensor


class VAEModel(nn.Module):
    """Encoder q(z|x) = N(mu, diag exp(logvar)), prior N(0, I), decoder and likelihood p(x|z).

    ``posterior_variance="softplus-logvar"`` reproduces the reference code's
    logvar = softplus(raw), which forces sigma^2 >= 1 (never the default).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood,
                 posterior_variance: PosteriorVariance = "logvar"):
        super().__init__()
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood
        self.posterior_variance = posterior_variance

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, *shape] -> (mu, logvar), each [B, d]."""
        mu, raw = self.encoder(x)
        return mu, (F.softplus(raw) if self.posterior_variance == "softplus-logvar" else raw)

    def decode(self, z: Tensor) -> Tensor:
        """z [B, d] -> likelihood parameters [B, *shape]."""
        return self.decoder(z)

    def decode_mean(self, z: Tensor) -> Tensor:
        """z [B, d] -> decoder mean in data space [B, *shape]."""
        return self.likelihood.mean(self.decoder(z))

    def decode_given(self, z: Tensor, x: Tensor) -> Tensor:
        """The likelihood parameters that score ``x`` [B, *shape] given z [B, d]: here
        ``decode(z)`` (a sentence decoder also reads x's tokens: teacher forcing)."""
        return self.decode(z)

    @staticmethod
    def sample(mu: Tensor, logvar: Tensor) -> Tensor:
        """Reparameterised z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (global RNG)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward(self, x: Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.sample(mu, logvar)
        params = self.decode(z)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        return VAEOutput(mu, logvar, z, params, self.likelihood.rec(params, x), kl)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) [S, B] with every constant, for x [B, *shape] and latents z [S, B, d]."""
        params = self.decode(z.flatten(0, 1))
        return self.likelihood.log_prob(params.unflatten(0, z.shape[:2]), x)
