"""BN-VAE (methods/bn_vae.py): E_x[KL_j] >= gamma^2 / 2 in training and in evaluation, and the
caveat: the floor needs the raw means' batch variance above batch norm's eps."""

from __future__ import annotations

import pytest
import torch

from image_methods import IMAGE, build, minimise_kl, per_dim_kl


def raw_mean_variance(method, x: torch.Tensor) -> torch.Tensor:
    """Batch variance (N divisor, as batch norm) of the encoder's raw means [d]."""
    return method.model.encoder.encoder(x)[0].var(0, unbiased=False)


@pytest.mark.parametrize("gamma", [0.3, 0.6])
def test_bn_vae_expected_kl_per_dimension_is_at_least_gamma_squared_over_two(gamma):
    """In training mode E_batch[mu_j^2] = gamma^2 v_j / (v_j + eps) + b_j^2 exactly (v_j: the batch
    variance of the raw means, eps = 1e-5 of batch norm), so E[KL_j] >= gamma^2 / 2 whenever
    v_j >> eps, whatever the encoder and the learned shift b; a plain VAE has no such floor."""
    x = torch.rand(256, *IMAGE, generator=torch.Generator().manual_seed(1))
    floor = gamma ** 2 / 2
    for seed in range(3):
        method = build("bn-vae", seed=seed, gamma=gamma, latent=6)
        with torch.no_grad():
            method.model.encoder.shift.normal_()  # any learned shift only adds to the floor
        method.train()
        with torch.no_grad():
            mu, logvar = method.model.encode(x)
            v, b = raw_mean_variance(method, x), method.model.encoder.shift
            torch.testing.assert_close(mu.square().mean(0), gamma ** 2 * v / (v + 1e-5) + b.square(), rtol=1e-4, atol=1e-6)
            kl = per_dim_kl(mu, logvar).mean(0)
            assert (kl >= floor * v / (v + 1e-5) * (1 - 1e-5)).all()
            assert (v > 100 * 1e-5).all() and kl.min() >= floor * 0.99  # a fresh encoder: v >> eps
    vae = build("vae", latent=6)
    minimise_kl(vae, x, steps=50)
    with torch.no_grad():
        assert per_dim_kl(*vae.model.encode(x)).mean(0).max() < floor / 2


def test_bn_vae_floor_holds_in_evaluation_with_the_running_statistics():
    method = build("bn-vae", gamma=0.5, latent=6)
    x = torch.rand(256, *IMAGE, generator=torch.Generator().manual_seed(1))
    method.train()
    with torch.no_grad():
        for _ in range(100):  # the running statistics converge to the data's
            method.model.encode(x)
    method.eval()
    with torch.no_grad():
        assert per_dim_kl(*method.model.encode(x)).mean(0).min() >= 0.5 ** 2 / 2 * 0.99
    names = [name for name, _ in method.named_parameters()]
    assert "model.encoder.shift" in names and not any("norm" in n for n in names)  # gamma fixed, shift learned


def test_bn_vae_floor_needs_raw_mean_variance_above_the_batch_norm_eps():
    """The caveat, recorded in every run's method_extras: an optimiser that shrinks the raw
    means' batch variance below batch norm's eps takes the floor with it (here Adam on the KL
    alone drives it to 0 within a few dozen steps; the running variance follows)."""
    method = build("bn-vae", gamma=0.5, latent=6)
    x = torch.rand(256, *IMAGE, generator=torch.Generator().manual_seed(1))
    minimise_kl(method, x, steps=150)
    method.train()
    with torch.no_grad():
        mu, logvar = method.model.encode(x)
        v = raw_mean_variance(method, x)
    assert (v < 1e-6).any() and per_dim_kl(mu, logvar).mean(0).min() < 0.5 ** 2 / 2 * 0.1
    extras = method.record_extras()
    assert extras["dims_near_eps"] >= 1 and extras["raw_mean_running_var_min"] < 1e-3
