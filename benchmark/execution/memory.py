"""How many runs fit in one pack on a device (``run --pack auto``), per kind of run.

An estimate, not a measurement: per run, the parameters with their gradients and Adam's two
moments (4 copies) and the activations of one batch (forward and backward, counted as 64 copies
of the batch's input, 512 for the LID decoders, whose second-order graph holds data-space ICNN
activations); the training and test data on the device once per pack and data set where every
seed uses the same examples (a whole published split: the pack holds one copy,
``benchmark.execution.runner.share_equal_splits``), else once per run (a subset or a held-out
split drawn from the seed). Each kind of run (the runs that may share a pack,
:func:`benchmark.ml.pack.pack_key`) gets its own size: as many of its runs as fit in the pack
budget (half the GPU's free memory, or of an assumed GPU size when planning) beside the copies of
the data sets its runs train on, at most :data:`MAX_PACK`. On a CPU packs are of one run (packing measured slower there,
docs/performance.md).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..config import RunConfig
from ..data.catalog import DATASETS
from ..discovery import METHODS
from ..ml.method import build_method, validation_fraction
from ..ml.pack import pack_key

MAX_PACK = 128
GIB = 2 ** 30
BUDGET_FRACTION = 0.5  # of the GPU's free memory (or of the assumed size): the rest for the allocator's slack


def run_bytes(config: RunConfig) -> int:
    """Estimated device memory (bytes) one run of ``config`` needs while it trains, beside its
    :func:`shared_bytes`."""
    spec = DATASETS[config.dataset.name]
    shape = spec.shape or (1,)
    example = math.prod(shape)
    with torch.device("meta"):
        method = build_method(config.method, config.hyperparameters, config.model, tuple(shape))
    params = sum(p.numel() for p in method.parameters())
    activations = (512 if config.method in ("lid-vae", "il-lid-vae") else 64) * config.train.batch_size * example
    train, test = _split_bytes(config)
    return 4 * (4 * params + activations) + (0 if _same_train(config) else train) + (0 if _same_test(config) else test)


def shared_bytes(config: RunConfig) -> int:
    """Estimated device memory (bytes) of the splits of ``config``'s data set that every seed
    shares (whole published splits), held once per pack and data set."""
    train, test = _split_bytes(config)
    return (train if _same_train(config) else 0) + (test if _same_test(config) else 0)


def _split_bytes(config: RunConfig) -> tuple[int, int]:
    """Bytes of the training (uint8 pixels on the device) and test (float32) examples."""
    spec = DATASETS[config.dataset.name]
    example = math.prod(spec.shape or (1,))
    train = config.dataset.train_size or spec.train_size or 60_000
    test = config.dataset.test_size or spec.test_size or 10_000
    return train * example, 4 * test * example


def _same_train(config: RunConfig) -> bool:
    """Whether every seed trains on the same examples (no subset, no held-out split drawn from the seed)."""
    return config.dataset.train_size is None and not validation_fraction(config.method, config.hyperparameters,
                                                                         config.model)


def _same_test(config: RunConfig) -> bool:
    return config.dataset.test_size is None


def pack_budget(device: torch.device, assumed_gib: float | None = None) -> int | None:
    """Bytes one pack may take on ``device``: :data:`BUDGET_FRACTION` of an assumed GPU of
    ``assumed_gib`` GiB (planning: no GPU needed), else of the GPU's free memory; None on a CPU
    without an assumed size (packs of one)."""
    if assumed_gib is not None:
        return int(assumed_gib * GIB * BUDGET_FRACTION)
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free * BUDGET_FRACTION)


def auto_pack_size(budget: int | None, runs: Sequence[RunConfig] = ()) -> Callable[[RunConfig], int]:
    """The size ``--pack auto`` gives the pack of each run (its kind's: as many of its runs as
    fit in ``budget`` bytes beside one copy of each data set the kind's ``runs`` train on, between
    1 and :data:`MAX_PACK`; 1 without a budget). A run of a kind not among ``runs`` counts its
    own data set only."""
    if budget is None:
        return lambda config: 1
    names: dict[str, set[str]] = {}
    for config in runs:
        names.setdefault(pack_key(config, METHODS[config.method].pack_scalars), set()).add(config.dataset.name)
    sizes: dict[str, int] = {}

    def size(config: RunConfig) -> int:
        key = pack_key(config, METHODS[config.method].pack_scalars)
        if key not in sizes:
            datasets = max(len(names.get(key, ())), 1)
            room = budget - datasets * shared_bytes(config)
            sizes[key] = max(1, min(MAX_PACK, room // run_bytes(config)))
        return sizes[key]

    return size
