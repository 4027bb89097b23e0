"""The import surface of method plugins: everything a file in ``methods/`` may use, in one place.

A plugin imports from here only (``from benchmark.plugin import Method, register_method``), so
the harness can move its modules without breaking plugins. The contract
(docs/adding-a-method.md): subclass :class:`Method`, set ``name`` and ``Config`` (a
dataclass whose every field is declared with :func:`setting`: default, range and doc), implement
``loss(x, progress)`` and decorate the class with :func:`register_method`; the optional hooks are
:class:`Method`'s instance methods.
"""

from .config import ModelConfig, setting
from .errors import GridError
from .data.vocabulary import SequenceShape
from .ml.archs import arch_kind, architecture
from .ml.icnn import ICNNInit, LIDDecoder
from .ml.method import Method, StepTools, TrainingProgress, register_method
from .evaluation.metrics import kl_per_dimension, mutual_information
from .ml.models import VAEModel, VAEOutput
from .ml.schedules import make_schedule
from .ml.sequence import (LIDSequenceDecoder, LSTMDecoder, PriorEncoder, SequenceVAEModel, sequence_decoder,
                          teacher_forced_soft_tokens)

__all__ = ["GridError", "ICNNInit", "LIDDecoder", "LIDSequenceDecoder", "LSTMDecoder", "Method", "ModelConfig",
           "PriorEncoder", "SequenceShape", "SequenceVAE", "StepTools", "TrainingProgress", "VAE", "VAEOutput",
           "arch_kind", "architecture", "kl_per_dimension", "make_schedule", "mutual_information",
           "register_method", "sequence_decoder", "setting", "teacher_forced_soft_tokens"]
