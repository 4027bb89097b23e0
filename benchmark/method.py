"""The method plugin contract, the method registry and plugin discovery.

A method is one file in ``methods/`` (or in a directory named by ``--plugins`` /
``$BENCHMARK_PLUGINS``) defining a :class:`Method` subclass decorated with
:func:`register_method`. Files are imported on first lookup of the registry.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn

from .errors import PluginError
from .models import VAE, ModelConfig
from .provenance import PACKAGE_DIR, code_version
from .registry import Registry

BUILTIN_PLUGIN_DIR = Path(__file__).resolve().parent.parent / "methods"
PLUGIN_PATH_ENV = "BENCHMARK_PLUGINS"


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


class Method(nn.Module):
    """A VAE model plus the objective a remedy trains it with.

    Subclasses set ``name``, ``Config`` (a dataclass of hyperparameters with defaults; its
    field docs go in the class docstring) and implement :meth:`loss`. They may override
    :meth:`build_decoder` to replace the architecture's decoder.
    """

    name: ClassVar[str]
    Config: ClassVar[type] = NoHyperparameters

    def __init__(self, config: Any, model: VAE):
        super().__init__()
        self.config = config
        self.model = model

    @classmethod
    def build_decoder(cls, config: Any, shape: tuple[int, ...], model_config: ModelConfig) -> nn.Module | None:
        """A decoder z [B, d] -> params [B, *shape] replacing the architecture's, or None."""
        return None

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor]:
        """Scalar loss parts for the batch ``x`` [B, *shape], averaged over the batch.

        Must hold ``"loss"`` (what is minimised) and ``"rec"`` and ``"kl"`` (nats per example);
        every other entry (a method's own terms, the current value of a schedule) is logged.
        """
        raise NotImplementedError

    def record_extras(self) -> dict[str, Any]:
        """Method-specific facts to store in the run record (e.g. derived constants)."""
        return {}

    @classmethod
    def description(cls) -> str:
        return (inspect.getdoc(cls) or "").split("\n")[0]

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


def _discover() -> None:
    for directory in plugin_dirs():
        for path in sorted(directory.glob("*.py")):
            if not path.name.startswith("_"):
                _import_plugin(path)


METHODS: Registry[type[Method]] = Registry("method", on_lookup=_discover)
_imported: set[Path] = set()


def plugin_dirs() -> list[Path]:
    """The built-in ``methods/`` folder, then each folder in ``$BENCHMARK_PLUGINS``."""
    extra = [Path(p) for p in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p]
    for directory in extra:
        if not directory.is_dir():
            raise PluginError(f"plugin folder {directory} (from ${PLUGIN_PATH_ENV} or --plugins) does not exist")
    return [BUILTIN_PLUGIN_DIR, *extra]


def _import_plugin(path: Path) -> None:
    path = path.resolve()
    if path in _imported:
        return
    _imported.add(path)
    module_name = f"benchmark_plugin_{path.stem}_{abs(hash(str(path))):x}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[module_name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"method plugin {path} failed to import: {type(exc).__name__}: {exc}") from exc


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: check the plugin contract and register ``cls`` under ``cls.name``."""
    where = inspect.getsourcefile(cls) or cls.__module__
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise PluginError(f"{where}: @register_method needs a subclass of benchmark.method.Method")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise PluginError(f"{where}: {cls.__name__} must set a class attribute `name` (e.g. name = \"my-vae\")")
    if not dataclasses.is_dataclass(cls.Config):
        raise PluginError(f"{where}: {cls.__name__}.Config must be a dataclass of hyperparameters")
    if cls.loss is Method.loss:
        raise PluginError(f"{where}: {cls.__name__} must implement loss(self, x, progress)")
    existing = METHODS._items.get(cls.name)
    if existing is not None and (existing.__qualname__, inspect.getsourcefile(existing)) != (cls.__qualname__, where):
        raise PluginError(f"{where}: method name {cls.name!r} is already registered by "
                          f"{inspect.getsourcefile(existing)}; rename one of them")
    METHODS._items[cls.name] = cls
    return cls


def method_files(cls: type[Method]) -> list[Path]:
    """The plugin source files a method's numbers depend on beyond the core: the files of the
    :class:`Method` subclasses in its MRO and of its Config's bases, outside the ``benchmark`` package."""
    files = set()
    classes = [k for k in cls.__mro__ if issubclass(k, Method) and k is not Method]
    for klass in (*classes, *(k for k in cls.Config.__mro__ if k is not object)):
        try:
            path = Path(inspect.getsourcefile(klass) or "")
        except TypeError:  # built-in classes (object)
            continue
        if path.is_file() and not path.resolve().is_relative_to(PACKAGE_DIR):
            files.add(path.resolve())
    return sorted(files)


def method_code(name: str) -> dict[str, Any]:
    """The code version of method ``name`` (see :func:`benchmark.provenance.code_version`):
    records made with another ``key`` are stale."""
    return code_version(method_files(METHODS[name]))


def build_method(name: str, hyperparameters: dict[str, Any], model_config: ModelConfig,
                 shape: tuple[int, ...]) -> Method:
    """Instantiate method ``name`` with its model for data of ``shape`` (uses the global RNG)."""
    from .likelihoods import LIKELIHOODS
    from .models import build_arch

    cls = METHODS[name]
    config = cls.Config(**hyperparameters)
    encoder, decoder = build_arch(model_config, shape)
    decoder = cls.build_decoder(config, shape, model_config) or decoder
    model = VAE(encoder, decoder, LIKELIHOODS[model_config.likelihood], model_config.posterior_variance)
    return cls(config, model)
