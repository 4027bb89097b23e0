"""KL annealing (methods/kl_annealing.py): the KL weight at every step, linear and sigmoid."""

from __future__ import annotations

import math

import pytest
import torch

from image_methods import IMAGE, at, build


@pytest.mark.parametrize("beta_start, warmup, total", [(0.0, 0.4, 37), (0.1, 1.0, 20), (0.0, 1.0, 2)])
def test_kl_annealing_linear_weight_at_every_step(beta_start, warmup, total):
    method = build("kl-annealing", beta_start=beta_start, warmup=warmup, beta_max=1.0)
    x = torch.rand(6, *IMAGE)
    for t in range(total):
        parts = method.loss(x, at(t, total))
        expected = beta_start + (1.0 - beta_start) * min(t / max(total - 1, 1) / warmup, 1.0)
        assert parts["beta"] == pytest.approx(expected, abs=1e-12), t
        torch.testing.assert_close(parts["loss"], parts["rec"] + expected * parts["kl"])
    assert method.loss(x, at(0, total))["beta"] == beta_start
    assert method.loss(x, at(total - 1, total))["beta"] == 1.0


def test_kl_annealing_sigmoid_weight_at_every_step():
    total, warmup, k = 41, 0.5, 10.0
    method = build("kl-annealing", schedule="sigmoid", warmup=warmup, steepness=k)
    x = torch.rand(6, *IMAGE)
    logistic = lambda v: 1 / (1 + math.exp(-k * (v - 0.5)))
    betas = [method.loss(x, at(t, total))["beta"] for t in range(total)]
    for t, beta in enumerate(betas):
        u = min(t / (total - 1) / warmup, 1.0)
        assert beta == pytest.approx((logistic(u) - logistic(0)) / (logistic(1) - logistic(0)), abs=1e-12), t
    assert betas[0] == 0.0 and betas[20:] == [1.0] * 21 and betas[10] == pytest.approx(0.5)
