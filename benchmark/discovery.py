"""The method registry, filled from plugin files on its first lookup.

A method is one Python file in ``methods/`` (or in a folder named by ``--plugins`` /
``$BENCHMARK_PLUGINS``, which may also name single ``.py`` files) that registers a :class:`benchmark.ml.method.Method` subclass with
``@register_method`` (its imports: :mod:`benchmark.plugin`). The files are imported in name
order on the first lookup of :data:`METHODS`; they import torch, this module does not. They are
found again only when what they are found from has changed (:func:`sources_state`: the
``$BENCHMARK_PLUGINS`` entries, the working directory, the folders' modification times), so a
lookup costs a few ``stat`` calls, not a glob of every folder.

A plugin file that ends the process at import (``sys.exit``) is a :class:`PluginError` like any
other failed import. One whose import takes over :data:`SLOW_IMPORT_S` seconds is named once, on
stderr, by the command's own process (:data:`REPORTER_ENV`): every worker process imports it again.

The built-in methods are the repository's top-level ``methods/`` folder; an installed package
(wheel) carries that folder as ``benchmark/methods/`` (pyproject.toml maps it). A ``methods/``
folder in the working directory adds the user's methods, after the built-in ones; a file there
or in a ``--plugins`` folder that is a byte-identical copy of a built-in file (e.g. a checkout's
own ``methods/`` seen by an installed ``vae-bench``) is the built-in and is not imported twice.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

from .errors import PackagingError, PluginError
from .registry import Registry

_PACKAGE_DIR = Path(__file__).resolve().parent
# An installed package: benchmark/methods/; a checkout (or an editable install): <repository>/methods/.
BUILTIN_PLUGIN_DIR = (_PACKAGE_DIR / "methods" if (_PACKAGE_DIR / "methods").is_dir()
                      else _PACKAGE_DIR.parent / "methods")
PLUGIN_PATH_ENV = "BENCHMARK_PLUGINS"
# The user's own methods: a folder of this name in the working directory.
LOCAL_PLUGIN_DIR = "methods"
# A plugin import slower than this (seconds) is named on stderr, once per command.
SLOW_IMPORT_S = 2.0
# The process id of the process that names slow imports (the command's own, set by the CLI or by the
# first process to discover plugins); the worker processes it starts inherit it and stay quiet.
REPORTER_ENV = "BENCHMARK_PLUGIN_REPORTER"
# A folder modified this recently (seconds) may change again within its clock's resolution:
# its state is not trusted, the next lookup looks again.
RACY_S = 2.0


def builtin_plugin_dir() -> Path:
    """The built-in methods' folder; a :class:`PackagingError` naming it when it is missing."""
    if not BUILTIN_PLUGIN_DIR.is_dir():
        raise PackagingError(f"the built-in methods' folder {BUILTIN_PLUGIN_DIR} is missing: the package is installed "
                             "incompletely; reinstall it (pip install --force-reinstall .) or run from a checkout")
    return BUILTIN_PLUGIN_DIR


def _folder_files(folder: Path) -> list[Path]:
    return [path for path in sorted(folder.glob("*.py")) if not path.name.startswith("_")]


def plugin_files() -> list[Path]:
    """The plugin files: those of the built-in methods' folder, those of ``./methods/``, then those
    of each entry of ``$BENCHMARK_PLUGINS`` (a folder: its ``*.py`` files in name order, skipping
    ``_*``; or one ``.py`` file). A file listed already, or a byte-identical copy of a built-in
    file, is left out: a built-in method is never registered twice."""
    extra = [Path(p) for p in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p]
    builtin = _folder_files(builtin_plugin_dir())
    local = Path.cwd() / LOCAL_PLUGIN_DIR
    candidates = _folder_files(local) if local.is_dir() else []
    for entry in extra:
        if entry.is_dir():
            candidates += _folder_files(entry)
        elif entry.is_file() and entry.suffix == ".py":
            candidates.append(entry)
        else:
            what = "is not a .py file" if entry.exists() else "does not exist"
            raise PluginError(f"plugin path {entry} (from --plugins or ${PLUGIN_PATH_ENV}) {what}; "
                              "give a folder of method plugin files or one plugin .py file")
    seen = {path.resolve() for path in builtin}
    contents = {path.read_bytes() for path in builtin}
    files = list(builtin)
    for path in candidates:
        if path.resolve() in seen or path.read_bytes() in contents:
            continue
        seen.add(path.resolve())
        files.append(path)
    return files


def _mtime_ns(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


@functools.lru_cache(maxsize=16)
def _watched(extra: str, cwd: str) -> tuple[str, ...]:
    """The paths whose modification times say whether the plugin files can have changed."""
    return (str(BUILTIN_PLUGIN_DIR), os.path.join(cwd, LOCAL_PLUGIN_DIR),
            *(os.path.join(cwd, p) for p in extra.split(os.pathsep) if p))


def sources_state() -> tuple[Any, ...]:
    """What :func:`plugin_files` finds the plugin files from, cheaply: ``$BENCHMARK_PLUGINS``, the
    working directory and the modification times of the built-in folder, ``./methods/`` and each
    ``$BENCHMARK_PLUGINS`` entry (a file added to or removed from a folder changes its time)."""
    extra, cwd = os.environ.get(PLUGIN_PATH_ENV, ""), os.getcwd()
    return extra, cwd, tuple(_mtime_ns(path) for path in _watched(extra, cwd))


def _racy(state: tuple[Any, ...]) -> bool:
    """Whether a folder of ``state`` changed so recently that it may change again unseen."""
    recent = time.time_ns() - int(RACY_S * 1e9)
    return any(mtime is not None and mtime >= recent for mtime in state[2])


_discovered: tuple[Any, ...] | None = None  # sources_state() when the plugins were last found


def _discover() -> None:
    """Import the plugin files not imported yet, unless nothing they are found from has changed."""
    global _discovered
    state = sources_state()
    if state == _discovered:
        return
    _discovered = None
    for path in plugin_files():
        _import_plugin(path)
    _discovered = None if _racy(state) else state


# Method name -> Method subclass (type[benchmark.ml.method.Method]).
METHODS: Registry[type] = Registry("method", on_lookup=_discover)
_imported: set[Path] = set()


def claim_reporting() -> None:
    """Make this process the one that names slow plugin imports (the CLI's command process);
    worker processes started later inherit the claim and stay quiet."""
    os.environ[REPORTER_ENV] = str(os.getpid())


def _reports() -> bool:
    """Whether this process names slow plugin imports: the first to ask claims it, unless a
    parent process (the command's) did."""
    if REPORTER_ENV not in os.environ:
        claim_reporting()
    return os.environ[REPORTER_ENV] == str(os.getpid())


def _import_plugin(path: Path) -> None:
    path = path.resolve()
    if path in _imported:
        return
    _imported.add(path)
    module_name = f"benchmark_plugin_{path.stem}_{abs(hash(str(path))):x}"
    reports = _reports()  # claimed before the import: a plugin that starts processes starts quiet ones
    try:
        importlib.import_module(f"{__package__}.plugin")  # torch and the plugin surface: not the plugin's own time
        started = time.perf_counter()
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[module_name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except (PluginError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # SystemExit too: a plugin neither ends the process nor fakes its exit code
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise PluginError(f"method plugin {path} failed to import: {why}") from exc
    seconds = time.perf_counter() - started
    if seconds > SLOW_IMPORT_S and reports:
        print(f"note: method plugin {path} took {seconds:.1f} s to import; each worker process "
              "(--workers, --executor ray) pays this again", file=sys.stderr)
