"""How many runs fit in one pack (benchmark/execution/memory.py): `run --pack auto` is one on a
CPU, the memory estimate of a run grows with its model, and each kind of run gets its own size."""

from __future__ import annotations

import torch

from benchmark.execution.memory import GIB, MAX_PACK, auto_pack_size, pack_budget, run_bytes, shared_bytes
from benchmark.planning.grid import load_grid


def test_pack_auto_is_one_on_a_cpu_and_the_memory_estimate_grows_with_the_model():
    runs = [r.config for r in load_grid("quick").runs()]
    assert pack_budget(torch.device("cpu")) is None
    assert {auto_pack_size(None)(config) for config in runs} == {1}
    by_method = {r.method: run_bytes(r) + shared_bytes(r) for r in runs}
    assert by_method["lid-vae"] > by_method["vae"] > 60_000 * 784  # the training data alone


def test_each_kind_of_run_gets_as_many_runs_as_fit_in_the_budget():
    runs = {r.config.method: r.config for r in load_grid("quick").runs()}
    assert pack_budget(torch.device("cpu"), 80) == 40 * GIB  # an assumed GPU: half of it
    budget = shared_bytes(runs["lid-vae"]) + 5 * run_bytes(runs["lid-vae"]) + 1
    size = auto_pack_size(budget)
    assert size(runs["lid-vae"]) == 5  # the largest kind: no more than fit beside one copy of its data
    assert size(runs["vae"]) == min(MAX_PACK, (budget - shared_bytes(runs["vae"])) // run_bytes(runs["vae"])) > 5
    assert auto_pack_size(10 ** 15)(runs["vae"]) == MAX_PACK
    assert auto_pack_size(1)(runs["vae"]) == 1  # nothing fits: alone


def test_a_pack_holds_a_whole_published_split_once_and_a_seeds_subset_per_run():
    import dataclasses

    config = next(r.config for r in load_grid("quick").runs() if r.config.method == "vae")
    whole = dataclasses.replace(config, dataset=dataclasses.replace(config.dataset, train_size=None, test_size=None))
    subset = dataclasses.replace(config, dataset=dataclasses.replace(config.dataset, train_size=1000, test_size=None))
    assert shared_bytes(whole) == 60_000 * 784 + 4 * 10_000 * 784 and shared_bytes(subset) == 4 * 10_000 * 784
    assert run_bytes(subset) == run_bytes(whole) + 1000 * 784  # its own subset, in every run
    budget = shared_bytes(whole) + 10 * run_bytes(whole)
    assert auto_pack_size(budget)(whole) == 10
    other = dataclasses.replace(whole, dataset=dataclasses.replace(whole.dataset, name="mnist"))
    assert auto_pack_size(budget, [whole, other])(whole) < 10  # a kind spanning two data sets holds both
