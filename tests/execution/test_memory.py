"""How many runs fit in one pack (benchmark/execution/memory.py): `run --pack auto` is one on a
CPU, and the memory estimate of a run grows with its model."""

from __future__ import annotations

import torch

from benchmark.execution.memory import auto_pack_size, run_bytes
from benchmark.planning.grid import load_grid


def test_pack_auto_is_one_on_a_cpu_and_the_memory_estimate_grows_with_the_model():
    runs = [r.config for r in load_grid("quick").runs()]
    assert auto_pack_size(runs, torch.device("cpu")) == 1
    by_method = {r.method: run_bytes(r) for r in runs}
    assert by_method["lid-vae"] > by_method["vae"] > 60_000 * 784  # the training data alone
