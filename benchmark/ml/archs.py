"""The registered architectures: a grid names one (``arch = "mlp"``) and sets its options
(``hidden = [512, 512]``); :func:`build_arch` builds its encoder and decoder for a data set.

Image and vector presets are in :mod:`.models`, the LSTM (text) presets in :mod:`.sequence`.
"""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from ..data.vocabulary import SequenceShape
from ..registry import Registry
from .models import Architecture, Conv28Arch, Conv64Arch, ConvArch, MLPArch, MLPDeepArch, MLPShallowArch
from .sequence import LSTMArch, LSTMPTBArch, LSTMSmallArch, LSTMYahooArch

ARCHS: Registry[type[Architecture]] = Registry("architecture")
ARCHS.add("mlp", MLPArch)
ARCHS.add("conv", ConvArch)
ARCHS.add("mlp-shallow", MLPShallowArch)
ARCHS.add("mlp-deep", MLPDeepArch)
ARCHS.add("conv28", Conv28Arch)
ARCHS.add("conv64", Conv64Arch)
ARCHS.add("lstm", LSTMArch)
ARCHS.add("lstm-ptb", LSTMPTBArch)
ARCHS.add("lstm-yahoo", LSTMYahooArch)
ARCHS.add("lstm-small", LSTMSmallArch)


def architecture(config: ModelConfig) -> Architecture:
    """The architecture preset ``config.arch`` with ``config.options``."""
    return ARCHS[config.arch](**config.options)


def arch_kind(config: ModelConfig) -> str:
    """The kind of data the architecture of ``config`` takes: ``vector``, ``image`` or ``sequence``."""
    return ARCHS[config.arch].kind


def build_arch(config: ModelConfig, shape: tuple[int, ...] | SequenceShape) -> tuple[nn.Module, nn.Module]:
    """Encoder and decoder of the architecture of ``config`` for data of per-example ``shape``."""
    arch = architecture(config)
    why = arch.shape_problem(shape)
    if why is not None:
        raise ValueError(f"arch {config.arch!r}: {why}")
    return arch.build(shape if isinstance(shape, SequenceShape) else tuple(shape), config.latent_dim)
