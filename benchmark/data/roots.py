"""Where data sets are looked for, and how a missing one is fetched or explained.

A data root given by ``--data-root`` (else ``$BENCHMARK_DATA``) is the only place searched:
data said to be there is read from there or reported missing, never taken from elsewhere
without a word. Without one: the system roots (Debian's ``dataset-*`` packages), then the
user's cache folder, where ``--download`` also puts files when no data root is given. Other modules read :data:`SYSTEM_DATA_ROOTS` and :data:`CACHE_ROOT`
through this module at call time, so a test can point them elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import DataError
from .splits import LoadRequest

DATA_ENV = "BENCHMARK_DATA"
# Roots holding one folder per data set, as Debian's dataset-* packages install them.
SYSTEM_DATA_ROOTS: list[Path] = [Path("/usr/share/datasets")]
# Searched last, and where ``download=True`` puts files when no data root is given.
CACHE_ROOT: Path = Path.home() / ".cache" / "benchmark" / "data"


def given_root(data_root: str | Path | None) -> tuple[Path, str] | None:
    """The data root the user gave and how (``--data-root``, else ``$BENCHMARK_DATA``), or None."""
    if data_root is not None:
        return Path(data_root).expanduser(), "--data-root"
    env = os.environ.get(DATA_ENV)
    return (Path(env).expanduser(), f"${DATA_ENV}") if env else None


def check_data_root(data_root: str | Path | None) -> None:
    """Raise :class:`DataError` when the data root given (see :func:`given_root`) is no folder."""
    given = given_root(data_root)
    if given is not None and not given[0].is_dir():
        path, how = given
        what = "is not a folder" if path.exists() else "does not exist"
        raise DataError(f"{how} {path} {what}; give the folder that holds the data sets (docs/datasets.md), "
                        "or leave it out to use the system's data sets")


def candidate_dirs(data_root: Path | None, layouts: list[str], system_layouts: list[str]) -> list[Path]:
    """``ROOT/<layout>`` for each layout ("" is ROOT itself) under the data root given (only
    there: see :func:`given_root`); without one, ``SYSTEM/<system layout>`` under each system
    root, then the cache."""

    def under(root: Path, subpaths: list[str]) -> list[Path]:
        return [root / sub if sub else root for sub in subpaths]

    given = given_root(data_root)
    if given is not None:
        return list(dict.fromkeys(under(given[0], layouts)))
    dirs = [d for root in SYSTEM_DATA_ROOTS for d in under(root, system_layouts)]
    dirs += under(CACHE_ROOT, layouts)
    return list(dict.fromkeys(dirs))


def torchvision_fetch(request: LoadRequest, name: str, fetch: Callable[[object, str], object], hint: str = "") -> Path:
    """Run ``fetch(torchvision.datasets, root)``; returns the root it downloaded into."""
    root = request.data_root or CACHE_ROOT
    try:
        import torchvision.datasets
    except ImportError as e:
        raise DataError(f"--download needs torchvision ({e}); install it or get the {name} files yourself") from e
    try:
        fetch(torchvision.datasets, str(root))
    except Exception as e:  # network, quota and archive errors come in many types
        raise DataError(f"downloading {name} with torchvision into {root} failed: {type(e).__name__}: {e}{hint}") from e
    return root


def how_to_get(layout: str, download: str) -> str:
    """The "To get it" lines of a missing data set's error: the layout to provide, how to download."""
    return (f"To get it:\n"
            f"  - pass --data-root DIR or set {DATA_ENV}=DIR, with {layout}\n"
            f"  - {download}\n"
            f"  - see docs/datasets.md")
