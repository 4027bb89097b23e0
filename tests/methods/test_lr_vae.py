"""LR-VAE (methods/lr_vae.py): the latent-reconstruction loss is zero for an encoder that is a left
inverse of the decoder and has the expected value otherwise; alpha warms up (or follows the KL) and
is logged; the encoder's gradient scale and the stop-gradient placement act where they say. (On
text: tests/ml/test_sequence.py.)"""

import math
import sys

import pytest
import torch
from torch import nn

from benchmark.config import ModelConfig
from benchmark.discovery import METHODS
from benchmark.ml.likelihoods import LIKELIHOODS
from benchmark.ml.models import VAEModel, VAEOutput

from toy_methods import build, progress


def lr_module():
    return sys.modules[METHODS["lr-vae"].__module__]


class Linear(nn.Module):
    """x [B, D] -> x @ M^T, and (as an encoder) a zero raw log-variance."""

    def __init__(self, matrix: torch.Tensor, encoder: bool):
        super().__init__()
        self.matrix, self.encoder = nn.Parameter(matrix), encoder

    def forward(self, x):
        out = x @ self.matrix.T
        return (out, torch.zeros_like(out)) if self.encoder else out


def linear_vae(encoder_factor: float = 1.0, d: int = 3, size: int = 7) -> VAEModel:
    """Gaussian VAE with decoder W (orthonormal columns) and encoder mean factor * W^T x."""
    w, _ = torch.linalg.qr(torch.randn(size, d, dtype=torch.float64))
    return VAEModel(Linear(encoder_factor * w.T.clone(), True), Linear(w.clone(), False), LIKELIHOODS["gaussian"])


@pytest.mark.parametrize("z_source", ["prior", "posterior"])
@pytest.mark.parametrize("num_samples", [1, 3])
def test_lr_loss_is_zero_for_a_left_inverse_encoder(z_source, num_samples):
    torch.manual_seed(0)
    cls = METHODS["lr-vae"]
    method = cls(cls.Config(z_source=z_source, num_samples=num_samples), ModelConfig(latent_dim=3))
    method.model = linear_vae()
    parts = method.loss(torch.randn(16, 7, dtype=torch.float64), progress(5))
    assert float(parts["lr"].detach()) == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("reduction, factor", [("mean", 1.0), ("sum", 16.0)])
def test_lr_loss_value_when_the_encoder_is_not_a_left_inverse(reduction, factor):
    torch.manual_seed(0)
    model = linear_vae(encoder_factor=0.5)
    config = METHODS["lr-vae"].Config(z_source="posterior", lr_reduction=reduction)
    z = torch.randn(16, 3, dtype=torch.float64)
    out = VAEOutput(z, z, z, z, z, z)  # only z, mu and logvar are read
    lr = lr_module().latent_reconstruction(model, out, config, z)
    # E_mu(D(z)) = z / 2, so ||E_mu(D(z)) - z||^2 = ||z||^2 / 4.
    assert float(lr.detach()) == pytest.approx(factor * float(z.square().sum(-1).mean()) / 4)


def test_alpha_warms_up_linearly_and_is_logged():
    method = build("lr-vae", alpha_T=0.4, beta=0.3)
    x = torch.rand(8, 2)
    first, middle, last = (method.loss(x, progress(k)) for k in (0, 5, 10))
    assert (first["alpha"], last["alpha"]) == (0.0, pytest.approx(0.4))
    assert middle["alpha"] == pytest.approx(0.2)
    expected = middle["rec"] + 0.3 * middle["kl"] + 0.2 * middle["lr"]
    torch.testing.assert_close(middle["loss"], expected)
    assert float(first["lr"].detach()) > 0


def test_kl_adaptive_alpha_reads_the_previous_steps_kl():
    method = build("lr-vae", alpha_schedule="kl-adaptive", alpha_T=2.0, alpha_schedule_options={"center": 1.0})
    x = torch.rand(8, 2)
    before = method.loss(x, progress(0))
    after = method.loss(x, progress(1))
    assert after["alpha"] == pytest.approx(2.0 / (1 + math.exp(float(before["kl"].detach()) - 1.0)))


def lr_gradients(z_source: str, scale: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    method = build("lr-vae", z_source=z_source, encoder_grad_scale=scale)
    torch.manual_seed(3)
    method.loss(torch.rand(8, 2), progress(5))["lr"].backward()
    grads = lambda module: [p.grad.clone() for p in module.parameters()]
    return grads(method.model.encoder), grads(method.model.decoder)


@pytest.mark.parametrize("z_source", ["prior", "posterior", "posterior-mean"])
def test_encoder_grad_scale_scales_only_the_encoders_lr_gradient(z_source):
    encoder, decoder = lr_gradients(z_source, 1.0)
    encoder_scaled, decoder_scaled = lr_gradients(z_source, 1e-2)
    for full, scaled in zip(encoder, encoder_scaled):
        torch.testing.assert_close(scaled, 1e-2 * full)
    for full, scaled in zip(decoder, decoder_scaled):
        torch.testing.assert_close(scaled, full)
    assert all(g.abs().sum() > 0 for g in encoder + decoder)


@pytest.mark.parametrize("stop_gradient, z_grad, decoder_grad", [
    ("none", True, True), ("z", False, True), ("decoded", True, False)])
def test_stop_gradient_placement(stop_gradient, z_grad, decoder_grad):
    torch.manual_seed(0)
    model = linear_vae(encoder_factor=0.5)
    config = METHODS["lr-vae"].Config(z_source="posterior", stop_gradient=stop_gradient)
    z = torch.randn(16, 3, dtype=torch.float64, requires_grad=True)
    lr_module().latent_reconstruction(model, VAEOutput(z, z, z, z, z, z), config, z).backward()
    assert (z.grad is not None) == z_grad
    assert (model.decoder.matrix.grad is not None) == decoder_grad
    assert model.encoder.matrix.grad is not None
