"""The method registry, filled from plugin files on its first lookup.

A method is one Python file in ``methods/`` (or in a folder named by ``--plugins`` /
``$BENCHMARK_PLUGINS``, which may also name single ``.py`` files) that registers a :class:`benchmark.ml.method.Method` subclass with
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


def plugin_files() -> list[Path]:
    """The plugin files: those of the built-in ``methods/`` folder, then those of each entry of
    ``$BENCHMARK_PLUGINS`` (a folder: its ``*.py`` files in name order, skipping ``_*``; or one
    ``.py`` file)."""
    extra = [Path(p) for p in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p]
    files = []
    for entry in [BUILTIN_PLUGIN_DIR, *extra]:
        if entry.is_dir():
            files += [path for path in sorted(entry.glob("*.py")) if not path.name.startswith("_")]
        elif entry.is_file() and entry.suffix == ".py":
            files.append(entry)
        else:
            what = "is not a .py file" if entry.exists() else "does not exist"
            raise PluginError(f"plugin path {entry} (from --plugins or ${PLUGIN_PATH_ENV}) {what}; "
                              "give a folder of method plugin files or one plugin .py file")
    return files


def _discover() -> None:
    for path in plugin_files():
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
