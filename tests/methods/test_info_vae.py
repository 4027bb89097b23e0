"""InfoVAE (methods/info_vae.py): the MMD is ~0 for one distribution and grows with a shift; the
alpha / lambda weights of KL and MMD as in the paper."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import GridError

from image_methods import IMAGE, at, build, module


@pytest.mark.parametrize("kernel", ["gaussian", "imq"])
def test_mmd_is_zero_for_one_distribution_and_grows_with_a_shift(kernel):
    mmd = module("info-vae").mmd
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(600, 4, generator=generator, dtype=torch.float64) for _ in range(2))
    same = float(mmd(a, b, kernel))
    assert abs(same) < 2e-3
    shifted = [float(mmd(a, b + s, kernel)) for s in (0.25, 0.5, 1.0, 2.0)]
    assert shifted == sorted(shifted) and shifted[0] > 5 * abs(same)
    biased = float(mmd(a, b, kernel, estimator="biased"))
    assert 0 <= biased < 5e-3 and biased > same  # the V-statistic's positive bias


@pytest.mark.parametrize("alpha, lam", [(1.0, 1.0), (1.0, 1000.0), (0.0, 10.0), (-0.5, 5.0)])
def test_info_vae_weights_kl_and_mmd_as_in_the_paper(alpha, lam):
    method = build("info-vae", alpha=alpha, lam=lam)
    parts = method.loss(torch.rand(16, *IMAGE), at(0, 10))
    expected = parts["rec"] + (1 - alpha) * parts["kl"] + (alpha + lam - 1) * parts["mmd"]
    torch.testing.assert_close(parts["loss"], expected)


def test_info_vae_refuses_a_negative_mmd_weight():
    with pytest.raises(GridError, match="MMD weight alpha \\+ lam - 1 = -0.5 is negative"):
        build("info-vae", alpha=0.0, lam=0.5)
