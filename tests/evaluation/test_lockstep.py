"""Packed evaluation (benchmark/evaluation/lockstep.py): a pack's runs evaluated in lockstep, their
model passes batched, give every run the numbers of its own evaluation alone (float rounding of
batched products aside), on its own data and generator."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from benchmark.config import EvalConfig
from benchmark.data.splits import DataSplit, to_unit
from benchmark.discovery import METHODS
from benchmark.evaluation.evaluate import evaluate
from benchmark.evaluation.lockstep import Lockstep
from benchmark.ml.method import build_method
from benchmark.ml.pack import pack_problem
from benchmark.tools.check_method import MODEL, SHAPE, pixels

LID = {"hidden_latent": 16, "hidden_data": 16}
SMALL = {"lid-vae": LID, "il-lid-vae": {**LID, "L": 0.5}}
CONFIG = EvalConfig(nll_samples=12, nll_examples=40, geometry_points=8, noise_points=8, noise_draws=3)
SEEDS = (0, 1, 2)


def split(seed: int) -> DataSplit:
    """Run ``seed``'s own test split: 60 random 8 x 8 images in [0, 1], three labels."""
    return DataSplit(to_unit(pixels(60, 100 + seed)), torch.arange(60) % 3)


def evaluated(name: str, lockstep: bool):
    methods = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        methods.append(build_method(name, SMALL.get(name, {}), MODEL, SHAPE))
    generators = [torch.Generator().manual_seed(1000 + seed) for seed in SEEDS]
    if not lockstep:
        return [evaluate(m, split(s), CONFIG, g) for m, s, g in zip(methods, SEEDS, generators)], None
    batcher = Lockstep([m.model for m in methods])
    jobs = [functools.partial(evaluate, batcher.method(k, m), split(s), CONFIG, g)
            for k, (m, s, g) in enumerate(zip(methods, SEEDS, generators))]
    return batcher.run(jobs), batcher


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


PACKABLE = [name for name in sorted(METHODS) if pack_problem(METHODS[name], MODEL) is None]


@pytest.mark.parametrize("name", PACKABLE)
def test_lockstep_evaluation_gives_each_run_its_evaluation_alone(name):
    alone, _ = evaluated(name, lockstep=False)
    packed, batcher = evaluated(name, lockstep=True)
    assert batcher.single_calls == 0 and batcher.batched_calls > 0  # every model pass was one batched call
    for a, p in zip(alone, packed):
        for section in ("metrics", "estimators", "vectors", "per_class", "noise", "invalid"):
            assert same(getattr(a, section), getattr(p, section)), (name, section)
        assert a.images.keys() == p.images.keys()
        for key in a.images:
            torch.testing.assert_close(a.images[key], p.images[key], rtol=1e-5, atol=1e-6)
    assert not same(packed[0].metrics, packed[1].metrics)  # each run's own model, data and noise


def test_runs_whose_calls_differ_in_shape_are_made_one_by_one_and_a_failing_job_is_raised():
    torch.manual_seed(0)
    methods = [build_method("vae", {}, MODEL, SHAPE) for _ in range(3)]
    batcher = Lockstep([m.model for m in methods])

    @torch.no_grad()  # (grad mode is per thread; with gradients on, a call is made alone)
    def encode(k: int, n: int):
        return batcher.method(k, methods[k]).model.encode(torch.rand(n, *SHAPE))

    sizes = (5, 5, 7)  # runs 0 and 1 share a batched call, run 2 is made alone
    outs = batcher.run([functools.partial(encode, k, n) for k, n in enumerate(sizes)])
    assert [tuple(mu.shape) for mu, _ in outs] == [(5, 4), (5, 4), (7, 4)]
    assert (batcher.batched_calls, batcher.single_calls) == (2, 1)
    # a thread starts with gradients on: a call that may be differentiated through is made alone
    batcher.run([functools.partial(batcher.method(k, m).model.encode, torch.rand(2, *SHAPE))
                 for k, m in enumerate(methods)])
    assert (batcher.batched_calls, batcher.single_calls) == (2, 4)

    def failing():
        raise RuntimeError("run 1 failed")

    batcher = Lockstep([m.model for m in methods[:2]])
    with pytest.raises(RuntimeError, match="run 1 failed"):
        batcher.run([functools.partial(encode, 0, 4), failing])


def test_runs_take_turns_between_rounds():
    """One run works at a time between rounds (a run's own working memory is never held K times)."""
    import threading
    import time

    torch.manual_seed(0)
    methods = [build_method("vae", {}, MODEL, SHAPE) for _ in range(4)]
    batcher = Lockstep([m.model for m in methods])
    working, most, guard = [0], [0], threading.Lock()

    @torch.no_grad()
    def job(k: int) -> int:
        for _ in range(3):
            with guard:
                working[0] += 1
                most[0] = max(most[0], working[0])
            time.sleep(0.005)  # a run's own work, during which another thread could run
            with guard:
                working[0] -= 1
            batcher.method(k, methods[k]).model.encode(torch.rand(2, *SHAPE))
        return k

    assert batcher.run([functools.partial(job, k) for k in range(4)]) == [0, 1, 2, 3]
    assert most[0] == 1 and batcher.batched_calls == 12
