"""How many runs fit in one pack on a device (``run --pack auto``).

An estimate, not a measurement: per run, the parameters with their gradients and Adam's two
moments (4 copies), the training and test data on the device, and the activations of one batch
(forward and backward, counted as 64 copies of the batch's input, 512 for the LID decoders,
whose second-order graph holds data-space ICNN activations). A pack uses at most half the
GPU's free memory, at most :data:`MAX_PACK` runs; on a CPU packs are of one run (packing
measured slower there, docs/performance.md).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..config import RunConfig
from ..data.catalog import DATASETS
from ..ml.method import build_method

MAX_PACK = 64


def run_bytes(config: RunConfig) -> int:
    """Estimated device memory (bytes) one run of ``config`` needs while it trains."""
    spec = DATASETS[config.dataset.name]
    shape = spec.shape or (1,)
    example = math.prod(shape)
    train = config.dataset.train_size or spec.train_size or 60_000
    test = config.dataset.test_size or spec.test_size or 10_000
    with torch.device("meta"):
        method = build_method(config.method, config.hyperparameters, config.model, tuple(shape))
    params = sum(p.numel() for p in method.parameters())
    activations = (512 if config.method in ("lid-vae", "il-lid-vae") else 64) * config.train.batch_size * example
    return 4 * (4 * params + activations) + train * example + 4 * test * example


def auto_pack_size(runs: Sequence[RunConfig], device: torch.device) -> int:
    """The pack size ``--pack auto`` uses for ``runs`` on ``device``: 1 on a CPU; on a GPU as many
    of the largest run as fit in half the free memory, between 1 and :data:`MAX_PACK`."""
    if device.type != "cuda" or not runs:
        return 1
    free, _ = torch.cuda.mem_get_info(device)
    largest = max(run_bytes(config) for config in runs)
    return max(1, min(MAX_PACK, int(free * 0.5 // largest)))
