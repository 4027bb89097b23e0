"""The method registry, filled from plugin files on its first lookup.

A method is one Python file in ``methods/`` (or in a folder named by ``--plugins`` /
``$BENCHMARK_PLUGINS``) that registers a :class:`benchmark.ml.method.Method` subclass with
``@register_method`` (its imports: :mod:`benchmark.plugin`). The files are imported in name
order on the first lookup of :data:`METHODS`; they import torch, this module does not.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from .errors import PluginError
from .registry import Registry

BUILTIN_PLUGIN_DIR = Path(__file__).resolve().parent.parent / "methods"
PLUGIN_PATH_ENV = "BENCHMARK_PLUGINS"


def plugin_dirs() -> list[Path]:
    """The built-in ``methods/`` folder, then each folder in ``$BENCHMARK_PLUGINS``."""
    extra = [Path(p) for p in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p]
    for directory in extra:
        if not directory.is_dir():
            raise PluginError(f"plugin folder {directory} (from ${PLUGIN_PATH_ENV} or --plugins) does not exist")
    return [BUILTIN_PLUGIN_DIR, *extra]


def _discover() -> None:
    for directory in plugin_dirs():
        for path in sorted(directory.glob("*.py")):
            if not path.name.startswith("_"):
                _import_plugin(path)


# Method name -> Method subclass (type[benchmark.ml.method.Method]).
METHODS: Registry[type] = Registry("method", on_lookup=_discover)
_imported: set[Path] = set()


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
