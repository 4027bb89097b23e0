"""Cyclical KL annealing (methods/cyclical.py): the KL weight at every step, rising over the first
ratio of each cycle, then held."""

from __future__ import annotations

import pytest
import torch

from image_methods import IMAGE, at, build


@pytest.mark.parametrize("total, cycles, ratio", [(40, 4, 0.5), (30, 3, 0.8), (50, 1, 0.5)])
def test_cyclical_weight_rises_over_the_first_ratio_of_each_cycle_then_holds(total, cycles, ratio):
    method = build("cyclical", cycles=cycles, ratio=ratio, beta_max=0.8)
    x = torch.rand(6, *IMAGE)
    length = total // cycles
    for t in range(total):
        parts = method.loss(x, at(t, total))
        within = (t % length) / length
        expected = 0.8 * min(within / ratio, 1.0)
        assert parts["beta"] == pytest.approx(expected, abs=1e-12), t
        torch.testing.assert_close(parts["loss"], parts["rec"] + expected * parts["kl"])
    starts = [method.loss(x, at(c * length, total))["beta"] for c in range(cycles)]
    assert starts == [0.0] * cycles  # every cycle starts again from 0
