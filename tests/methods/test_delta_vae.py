"""delta-VAE (methods/delta_vae.py): every KL_j >= delta, for every input, at init and after
training against it; the committed variance solves the rate equation."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.config import ModelConfig
from benchmark.errors import GridError
from benchmark.ml.method import build_method

from image_methods import IMAGE, build, minimise_kl, module, per_dim_kl


@pytest.mark.parametrize("delta", [0.01, 0.1, 1.0, 5.0])
def test_committed_variance_solves_the_rate_equation(delta):
    s = module("delta-vae").committed_variance(delta)
    assert 0 < s < 1 and 0.5 * (s - 1 - math.log(s)) == pytest.approx(delta, rel=1e-12)


def extreme_inputs(n: int = 64) -> torch.Tensor:
    """Inputs that drive the encoder's raw log-variance to both extremes."""
    torch.manual_seed(5)
    x = torch.rand(n, *IMAGE)
    return torch.cat([x, 30 * x, -30 * x, torch.zeros(1, *IMAGE)])


@pytest.mark.parametrize("delta", [0.1, 0.5])
def test_delta_vae_kl_is_at_least_delta_for_every_input_and_dimension(delta):
    method = build("delta-vae", delta=delta)
    x, extreme = extreme_inputs()[:64], extreme_inputs()
    for mode in (method.train, method.eval):
        mode()
        with torch.no_grad():
            assert per_dim_kl(*method.model.encode(extreme)).min() >= delta - 1e-6
    minimise_kl(method, x, steps=80)
    for mode in (method.train, method.eval):
        mode()
        with torch.no_grad():
            assert per_dim_kl(*method.model.encode(extreme)).min() >= delta - 1e-6
            kl = per_dim_kl(*method.model.encode(x))
        assert kl.min() >= delta - 1e-6 and kl.mean() < delta + 0.05  # pushed against the floor, not through
    extras = method.record_extras()
    assert extras["committed_kl_per_dim"] == pytest.approx(delta) and extras["sigma_upper"] < 1
    # the same training collapses a plain VAE's posteriors far below delta
    vae = build("vae")
    minimise_kl(vae, x, steps=80)
    with torch.no_grad():
        assert per_dim_kl(*vae.model.encode(x)).mean() < delta / 2


def test_delta_vae_refuses_the_softplus_variance():
    with pytest.raises(GridError, match='posterior_variance = "softplus-logvar"'):
        build_method("delta-vae", {}, ModelConfig(latent_dim=4, options={"hidden": [8]},
                                                  posterior_variance="softplus-logvar"), IMAGE)
    with pytest.raises(GridError, match="sigma_lower = 0.9 is not below sigma_u"):
        build("delta-vae", delta=0.5, sigma_lower=0.9)
