"""Where data sets are looked for, and how a missing one is fetched or explained.

In order: the ``--data-root`` folder, ``$BENCHMARK_DATA``, the system roots (Debian's
``dataset-*`` packages), then the user's cache folder, where ``--download`` also puts files when
no data root is given. Other modules read :data:`SYSTEM_DATA_ROOTS` and :data:`CACHE_ROOT`
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


def candidate_dirs(data_root: Path | None, layouts: list[str], system_layouts: list[str]) -> list[Path]:
    """``ROOT/<layout>`` for each layout ("" is ROOT itself) under the data root, then
    $BENCHMARK_DATA, then ``SYSTEM/<system layout>`` under each system root, then the cache."""

    def under(root: Path, subpaths: list[str]) -> list[Path]:
        return [root / sub if sub else root for sub in subpaths]

    env = os.environ.get(DATA_ENV)
    dirs = under(data_root, layouts) if data_root else []
    dirs += under(Path(env).expanduser(), layouts) if env else []
    dirs += [d for root in SYSTEM_DATA_ROOTS for d in under(root, system_layouts)]
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
