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
from typing import Any, ClassVar, Iterable, Protocol, Sequence

from torch import Tensor, nn

from ..config import ModelConfig
from ..discovery import METHODS
from ..errors import GridError, PluginError
from ..ranges import declaration_problems, field_problems
from .likelihoods import LIKELIHOODS
from .archs import architecture, build_arch
from .models import VAEModel


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


HOOKS = ("check_model", "validation_fraction", "build_encoder", "build_decoder", "loss", "training_step",
         "pack_training_step", "on_epoch_end", "record_extras")  # every one an instance method (docs/adding-a-method.md)
# Gone from the contract: a plugin that still defines one is refused with the replacement.
RETIRED = {"ranges": 'the range of each Config field: setting(default, "[0, inf)", doc="...")',
           "wrap_encoder": "build_encoder(self, encoder)", "wrap_decoder": "build_decoder(self, decoder, shape)"}


class Method(nn.Module):
    """A VAE model plus the objective a remedy trains it with.

    Subclasses set ``name`` and ``Config`` (a dataclass of hyperparameters, each declared with
    :func:`benchmark.config.setting`: default, range and doc) and implement :meth:`loss`. They
    may set ``requires`` (where the method applies, shown by ``list methods``) and
    ``packable`` (its runs may train as one stacked model, :mod:`benchmark.ml.pack`), and
    override the other hooks of :data:`HOOKS`, all instance methods: the object exists, with
    ``config`` and ``model_config``, before its model is built (:func:`build_method`), so
    :meth:`check_model`, :meth:`validation_fraction`, :meth:`build_encoder` and
    :meth:`build_decoder` are asked before ``self.model`` exists. A method that overrides none
    of them trains exactly as the default path.
    """

    name: ClassVar[str]
    Config: ClassVar[type] = NoHyperparameters
    requires: ClassVar[str] = ""  # where the method applies (empty: every model); list methods shows it
    # Runs of this method may train together as one stacked model (run --pack): ``loss`` must be
    # a pure function of the parameters, buffers (in-place updates only), batch and progress,
    # drawing noise with torch.randn / randn_like only (the same draws in every step of a batch
    # shape), with the default training_step and on_epoch_end unless it writes its pack_training_step.
    packable: ClassVar[bool] = False
    # Hyperparameters that may differ between the runs of one pack: floats the loss reads from
    # ``self.config`` in arithmetic only (no Python branching or math.*), as they arrive as tensors,
    # or the targets of schedules built from them in __init__ (benchmark.ml.pack.schedule_scalars).
    pack_scalars: ClassVar[tuple[str, ...]] = ()
    # Metrics the method's constraint inflates by construction (e.g. AU for a method that keeps
    # every posterior mean varying): the report never marks them best. Descriptive only.
    guarantees: ClassVar[tuple[str, ...]] = ()
    model: VAEModel  # set by build_method after construction

    def __init__(self, config: Any, model_config: ModelConfig):
        super().__init__()
        self.config = config
        self.model_config = model_config

    def check_model(self) -> str | None:
        """Why this method does not apply to ``self.model_config``, or None. The grid loader
        asks before anything trains and :func:`build_method` refuses; the reason names what to
        change."""
        return None

    def validation_fraction(self) -> float:
        """Fraction of the training examples to hold out as the validation split that
        :meth:`on_epoch_end` gets, for data sets without a published one (0: none; default).
        A method that takes training decisions on held-out data asks for one here."""
        return 0.0

    def build_encoder(self, encoder: nn.Module) -> nn.Module:
        """The encoder the model uses, given the architecture's: x [B, *shape] ->
        (mu, raw_logvar), each [B, d]. Everything that encodes (training, curves, the final
        evaluation, the IW-NLL) goes through it, in the method's train / eval mode. Default:
        the architecture's, unchanged."""
        return encoder

    def build_decoder(self, decoder: nn.Module, shape: tuple[int, ...]) -> nn.Module:
        """The decoder the model uses, given the architecture's for data of ``shape``: z [B, d]
        -> params [B, *shape]; wrap it or build another (called before :meth:`build_encoder`).
        Default: the architecture's, unchanged."""
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
        ``progress.step`` counts the calls of this method. With ``packable = True``, override
        :meth:`pack_training_step` too."""
        parts = self.loss(x, progress)
        tools.step(parts["loss"])
        return parts

    def pack_training_step(self, runs: Sequence[Method], x: Tensor, progress: TrainingProgress,
                           tools: Any) -> dict[str, Tensor]:
        """What :meth:`training_step` does, for the K runs of a pack at once (called on run 0's
        method with every run's, ``runs``): the batches ``x`` [K, B, *shape], the loss parts to log
        [K] each, and ``tools`` a :class:`benchmark.ml.pack_step.PackTools` (the runs' losses, [K]
        each, from one vectorised call; optimiser steps in which each run may sit out; fresh
        batches per run). Each run's Python state (e.g. a mode :meth:`on_epoch_end` switches) is
        read from and written to ``runs[k]``. Only for a method that overrides
        :meth:`training_step` (or :meth:`on_epoch_end`) and declares ``packable = True``; a run
        in the pack must get the steps it gets alone (``python -m benchmark check-method NAME``)."""
        raise NotImplementedError

    def on_epoch_end(self, epoch: int, held_out: Tensor | None) -> None:
        """Called after each training epoch (``epoch`` 0-based) with the validation split
        [N, *shape] (float, in [0, 1]; None when the run has none; never the test split), in
        training mode; its time counts as training time. Default: nothing. Not with
        ``packable = True``, unless the method writes its :meth:`pack_training_step`: in a pack it
        is called on each run's own method, whose state the (shared) loss must not read. State it
        keeps must live in buffers or ``get_extra_state`` to survive checkpoints."""

    def record_extras(self) -> dict[str, Any]:
        """Method-specific facts to store in the run record (e.g. derived constants)."""
        return {}

    @classmethod
    def description(cls) -> str:
        return (inspect.getdoc(cls) or "").split("\n")[0]


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
    why = contract_problem(cls)
    if why is not None:
        raise PluginError(f"{where}: {why}")
    existing = METHODS.peek(cls.name)
    if existing is not None and (existing.__qualname__, inspect.getsourcefile(existing)) != (cls.__qualname__, where):
        raise PluginError(f"{where}: method name {cls.name!r} is already registered by "
                          f"{inspect.getsourcefile(existing)}; rename one of them")
    return METHODS.replace(cls.name, cls)


def contract_problem(cls: type[Method]) -> str | None:
    """The first breach of the contract in the declarations of ``cls`` (one line naming the
    fix), or None: a retired attribute or hook, a hook that is not an instance method, a
    Config field without a doc or with a bad range, packable with a hook that packs cannot run."""
    for attribute, instead in RETIRED.items():
        if hasattr(cls, attribute):
            return f"{cls.__name__}.{attribute} is no longer part of the contract; use {instead}"
    for hook in HOOKS:
        if isinstance(inspect.getattr_static(cls, hook), (classmethod, staticmethod)):
            return f"{cls.__name__}.{hook} must be an instance method (def {hook}(self, ...)), as every hook"
    problems = declaration_problems(cls.Config, doc_required=True)
    if problems:
        return problems[0]
    if cls.packable and cls.pack_training_step is Method.pack_training_step:
        for hook in ("training_step", "on_epoch_end"):
            if getattr(cls, hook) is not getattr(Method, hook):
                return (f"{cls.__name__} declares packable = True and overrides {hook}, which a pack cannot run; "
                        f"write its pack_training_step, or drop packable = True or the {hook} override")
    return None


def method_config(name: str, hyperparameters: dict[str, Any]) -> Any:
    """Method ``name``'s ``Config`` holding ``hyperparameters``; GridError for a value outside
    its range or choices (:func:`benchmark.ranges.field_problems`)."""
    config = METHODS[name].Config(**hyperparameters)
    for key, why in field_problems(config):
        raise GridError(f"{name}: hyperparameter {key}: {why}")
    return config


def model_problem(name: str, hyperparameters: dict[str, Any], model_config: ModelConfig) -> str | None:
    """Why method ``name`` with ``hyperparameters`` does not apply to ``model_config``
    (:meth:`Method.check_model`), or None."""
    return METHODS[name](method_config(name, hyperparameters), model_config).check_model()


def validation_fraction(name: str, hyperparameters: dict[str, Any], model_config: ModelConfig | None = None) -> float:
    """The fraction of its training examples method ``name`` holds out as a validation split
    (:meth:`Method.validation_fraction`; ``model_config`` the run's, default ModelConfig())."""
    return METHODS[name](method_config(name, hyperparameters), model_config or ModelConfig()).validation_fraction()


def build_method(name: str, hyperparameters: dict[str, Any], model_config: ModelConfig,
                 shape: tuple[int, ...]) -> Method:
    """Instantiate method ``name`` with its model for data of ``shape`` (uses the global RNG:
    the architecture's networks, then :meth:`~Method.build_decoder`, then
    :meth:`~Method.build_encoder`)."""
    method = METHODS[name](method_config(name, hyperparameters), model_config)
    why = method.check_model()
    if why is not None:
        raise GridError(f"{name} does not apply to this model: {why}")
    encoder, decoder = build_arch(model_config, shape)
    decoder = method.build_decoder(decoder, shape)
    encoder = method.build_encoder(encoder)
    method.model = architecture(model_config).model(encoder, decoder, LIKELIHOODS[model_config.likelihood],
                                                    model_config.posterior_variance)
    return method
