"""The pack's runwise optimiser (benchmark/ml/optimizers.py): each run of a stacked parameter
steps as the same optimiser steps that run's slice alone, and a run told to sit a step out keeps
its parameters, moments and step count."""

from __future__ import annotations

import pytest
import torch

from benchmark.config import TrainConfig
from benchmark.ml.optimizers import RunwiseOptimizer, make_optimizer


def grads(steps: int, shape=(3, 4, 5)) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=generator) for _ in range(steps)]


@pytest.mark.parametrize("kind, decay", [("adam", 0.0), ("adam", 0.1), ("adamw", 0.1), ("sgd", 0.1)])
def test_each_run_steps_as_its_own_optimiser_at_the_steps_it_takes(kind, decay):
    config = TrainConfig(optimizer=kind, lr=1e-2, weight_decay=decay)
    start = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(1))
    stacked = start.clone().requires_grad_(True)
    optimizer = RunwiseOptimizer([stacked], config)
    # run 0 steps every time, run 1 every other time, run 2 never after the first
    takes = [[True, i % 2 == 0, i == 0] for i in range(6)]
    for g, mask in zip(grads(6), takes):
        stacked.grad = g.clone()
        optimizer.select({stacked: mask})
        optimizer.step()
    for k in range(3):
        alone = start[k].clone().requires_grad_(True)
        reference = make_optimizer([alone], config)
        for g, mask in zip(grads(6), takes):
            if mask[k]:
                alone.grad = g[k].clone()
                reference.step()
        assert torch.equal(stacked.detach()[k], alone.detach())  # torch's own arithmetic, element for element
        if kind != "sgd":
            assert optimizer.state[stacked]["step"][k] == sum(mask[k] for mask in takes)


def test_a_run_that_sits_out_is_untouched_and_the_state_round_trips():
    config = TrainConfig(lr=1e-2)
    p = torch.randn(2, 6, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    optimizer = RunwiseOptimizer([p], config)
    p.grad = torch.ones(2, 6)
    optimizer.step()
    before = p.detach()[1].clone(), optimizer.state[p]["exp_avg"][1].clone()
    p.grad = torch.stack([torch.ones(6), torch.full((6,), float("nan"))])  # a run sitting out may hold any gradient
    optimizer.select({p: [True, False]})
    optimizer.step()
    assert torch.equal(p.detach()[1], before[0]) and torch.equal(optimizer.state[p]["exp_avg"][1], before[1])
    assert optimizer.state[p]["step"].tolist() == [2.0, 1.0]
    copy = torch.zeros(2, 6, requires_grad=True)
    restored = RunwiseOptimizer([copy], config)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.state[copy]["step"].tolist() == [2.0, 1.0]
    assert torch.equal(restored.state[copy]["exp_avg_sq"], optimizer.state[p]["exp_avg_sq"])
