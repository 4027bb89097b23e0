"""The method plugin contract: :class:`Method`, :func:`register_method` and :func:`build_method`.

A method is one file in ``methods/`` (or in a folder named by ``--plugins`` /
``$BENCHMARK_PLUGINS``) defining a :class:`Method` subclass decorated with
:func:`register_method`; :mod:`benchmark.discovery` imports the files on the first lookup of
the registry, and :mod:`benchmark.plugin` is the import surface plugins use.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Protocol

from torch import Tensor, nn

from ..config import ModelConfig
from ..discovery import METHODS
from ..errors import GridError, PluginError
from ..ranges import Interval
from .likelihoods import LIKELIHOODS
from .archs import architecture, build_arch
from .models import VAE


@dataclass(frozen=True)
class TrainingProgress:
    """Where training stands when a loss is computed (for warm-up and annealing schedules)."""

    epoch: int  # 0-based
    step: int  # optimiser steps taken so far, 0-based
    total_steps: int

    @property
    def fraction(self) -> float:
        """Fraction of training done, in [0, 1)."""
        return self.step / max(self.total_steps, 1)


@dataclass
class NoHyperparameters:
    """This method has no hyperparameters."""


class StepTools(Protocol):
    """What :meth:`Method.training_step` may use to take optimiser steps (implemented by
    :class:`benchmark.ml.train.OptimiserTools`): the run's one optimiser, its gradient clipping and
    fresh random minibatches of the training data."""

    def step(self, loss: Tensor, params: Iterable[nn.Parameter] | None = None) -> None:
        """zero_grad, ``loss.backward()``, clip (``train.grad_clip`` over every parameter), then
        one optimiser step of ``params`` only (None: every parameter; the others' gradients
        are dropped, so their optimiser state does not move)."""
        ...

    def fresh_batch(self) -> Tensor:
        """A minibatch [batch_size, *shape] of training examples drawn at random without
        replacement (float, in [0, 1]), from the run's batch-order generator."""
        ...


class Method(nn.Module):
    """A VAE model plus the objective a remedy trains it with.

    Subclasses set ``name``, ``Config`` (a dataclass of hyperparameters with defaults; its
    field docs go in the class docstring) and implement :meth:`loss`. They may set ``ranges``
    (hyperparameter name -> interval text such as ``"[0, inf)"``, :mod:`benchmark.ranges`;
    checked when a grid is loaded), ``requires`` (where the method applies, shown by
    ``list methods``) and ``packable`` (its runs may train as one stacked model,
    :mod:`benchmark.ml.pack`), and override the hooks: :meth:`build_decoder` (replace the
    architecture's decoder), :meth:`wrap_encoder` / :meth:`wrap_decoder` (wrap the
    architecture's networks), :meth:`check_model` (refuse a model the method does not apply
    to), :meth:`training_step` (take over the optimisation step), :meth:`on_epoch_end` (a
    per-epoch callback with the held-out split) and :meth:`record_extras`. A method that
    overrides none of them trains exactly as the default path.
    """

    name: ClassVar[str]
    Config: ClassVar[type] = NoHyperparameters
    ranges: ClassVar[dict[str, str]] = {}
    requires: ClassVar[str] = ""  # where the method applies (empty: every model); list methods shows it
    # Runs of this method may train together as one stacked model (run --pack): ``loss`` must be
    # a pure function of the parameters, buffers (in-place updates only), batch and progress,
    # drawing noise with torch.randn / randn_like only (the same draws in every step of a batch
    # shape), with the default training_step and on_epoch_end.
    packable: ClassVar[bool] = False
    # Hyperparameters that may differ between the runs of one pack: floats the loss reads from
    # ``self.config`` in arithmetic only (no Python branching or math.*), as they arrive as tensors.
    pack_scalars: ClassVar[tuple[str, ...]] = ()
    # Metrics the method's constraint inflates by construction (e.g. AU for a method that keeps
    # every posterior mean varying): the report never marks them best. Descriptive only.
    guarantees: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, model: VAE):
        super().__init__()
        self.config = config
        self.model = model

    @classmethod
    def build_decoder(cls, config: Any, shape: tuple[int, ...], model_config: ModelConfig) -> nn.Module | None:
        """A decoder z [B, d] -> params [B, *shape] replacing the architecture's, or None."""
        return None

    @classmethod
    def check_model(cls, config: Any, model_config: ModelConfig) -> str | None:
        """Why this method (hyperparameters ``config``) does not apply to ``model_config``, or
        None. The grid loader asks before anything trains and :func:`build_method` refuses;
        the reason names what to change."""
        return None

    @classmethod
    def wrap_encoder(cls, config: Any, encoder: nn.Module, model_config: ModelConfig) -> nn.Module:
        """The encoder the model uses, given the architecture's: x [B, *shape] ->
        (mu, raw_logvar), each [B, d]. Everything that encodes (training, curves, the final
        evaluation, the IW-NLL) goes through it, in the method's train / eval mode. Default:
        the architecture's, unchanged."""
        return encoder

    @classmethod
    def wrap_decoder(cls, config: Any, decoder: nn.Module, model_config: ModelConfig) -> nn.Module:
        """The decoder the model uses, given the architecture's (or :meth:`build_decoder`'s):
        z [B, d] -> params [B, *shape]. Default: unchanged."""
        return decoder

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor]:
        """Scalar loss parts for the batch ``x`` [B, *shape], averaged over the batch.

        Must hold ``"loss"`` (what is minimised) and ``"rec"`` and ``"kl"`` (nats per example);
        every other entry (a method's own terms, the current value of a schedule) is logged.
        """
        raise NotImplementedError

    def training_step(self, x: Tensor, progress: TrainingProgress, tools: StepTools) -> dict[str, Tensor]:
        """One optimisation step on the batch ``x`` [B, *shape]; returns the loss parts to log
        (as :meth:`loss`). Default: ``loss`` then ``tools.step(parts["loss"])``. Override to
        take over the step (several optimiser steps, parameter subsets, fresh minibatches);
        ``progress.step`` counts the calls of this method."""
        parts = self.loss(x, progress)
        tools.step(parts["loss"])
        return parts

    @classmethod
    def validation_fraction(cls, config: Any) -> float:
        """Fraction of the training examples to hold out as the validation split that
        :meth:`on_epoch_end` gets, for data sets without a published one (0: none; default).
        A method that takes training decisions on held-out data asks for one here."""
        return 0.0

    def on_epoch_end(self, epoch: int, held_out: Tensor | None) -> None:
        """Called after each training epoch (``epoch`` 0-based) with the validation split
        [N, *shape] (float, in [0, 1]; None when the run has none; never the test split), in
        training mode; its time counts as training time. Default: nothing.
        State it keeps must live in buffers or ``get_extra_state`` to survive checkpoints."""

    def record_extras(self) -> dict[str, Any]:
        """Method-specific facts to store in the run record (e.g. derived constants)."""
        return {}

    @classmethod
    def description(cls) -> str:
        return (inspect.getdoc(cls) or "").split("\n")[0]

    @classmethod
    def hyperparameter_ranges(cls) -> dict[str, Interval]:
        """The declared ``ranges``, parsed, by hyperparameter name."""
        return {key: Interval.parse(text) for key, text in cls.ranges.items()}

    @classmethod
    def hyperparameters(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls.Config))

    @classmethod
    def hyperparameter_docs(cls) -> dict[str, str]:
        """``name: text`` lines of the Config docstrings (own and inherited), by field name."""
        names = {f.name for f in dataclasses.fields(cls.Config)}
        docs: dict[str, str] = {}
        for klass in reversed(cls.Config.__mro__):
            for line in (klass.__doc__ or "").splitlines():
                key, sep, text = line.strip().partition(":")
                if sep and key in names:
                    docs[key] = text.strip()
        return docs


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: check the plugin contract and register ``cls`` under ``cls.name``."""
    where = inspect.getsourcefile(cls) or cls.__module__
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise PluginError(f"{where}: @register_method needs a subclass of benchmark.plugin.Method")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise PluginError(f"{where}: {cls.__name__} must set a class attribute `name` (e.g. name = \"my-vae\")")
    if not dataclasses.is_dataclass(cls.Config):
        raise PluginError(f"{where}: {cls.__name__}.Config must be a dataclass of hyperparameters")
    if cls.loss is Method.loss:
        raise PluginError(f"{where}: {cls.__name__} must implement loss(self, x, progress)")
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    for key, text in dict(cls.ranges).items():
        if key not in fields:
            raise PluginError(f"{where}: {cls.__name__}.ranges names {key!r}, which is not a hyperparameter; "
                              f"valid: {', '.join(sorted(fields)) or '(none)'}")
        try:
            Interval.parse(text)
        except ValueError as exc:
            raise PluginError(f"{where}: {cls.__name__}.ranges[{key!r}]: {exc}") from None
    existing = METHODS.peek(cls.name)
    if existing is not None and (existing.__qualname__, inspect.getsourcefile(existing)) != (cls.__qualname__, where):
        raise PluginError(f"{where}: method name {cls.name!r} is already registered by "
                          f"{inspect.getsourcefile(existing)}; rename one of them")
    return METHODS.replace(cls.name, cls)


def validation_fraction(name: str, hyperparameters: dict[str, Any]) -> float:
    """The fraction of its training examples method ``name`` holds out as a validation split
    (:meth:`Method.validation_fraction`)."""
    cls = METHODS[name]
    return cls.validation_fraction(cls.Config(**hyperparameters))


def build_method(name: str, hyperparameters: dict[str, Any], model_config: ModelConfig,
                 shape: tuple[int, ...]) -> Method:
    """Instantiate method ``name`` with its model for data of ``shape`` (uses the global RNG)."""
    cls = METHODS[name]
    config = cls.Config(**hyperparameters)
    why = cls.check_model(config, model_config)
    if why is not None:
        raise GridError(f"{name} does not apply to this model: {why}")
    encoder, decoder = build_arch(model_config, shape)
    decoder = cls.build_decoder(config, shape, model_config) or decoder
    encoder = cls.wrap_encoder(config, encoder, model_config)
    decoder = cls.wrap_decoder(config, decoder, model_config)
    model = architecture(model_config).model(encoder, decoder, LIKELIHOODS[model_config.likelihood],
                                             model_config.posterior_variance)
    return cls(config, model)
