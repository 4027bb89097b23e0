"""VAE and β-VAE (methods/vae.py): the loss is the negative ELBO, rec + KL, and β-VAE weighs its KL
by β; both recomputed here from the encoder, the reparameterised sample and the likelihood."""

from __future__ import annotations

import pytest
import torch

from image_methods import IMAGE, at, build, per_dim_kl


def negative_elbo_parts(method, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rec, KL), batch means, computed without the method: encode, draw z = μ + σ ε with the
    global RNG at ``seed``, score x under the decoder's likelihood, KL of N(μ, σ²) from N(0, I)."""
    model = method.model
    torch.manual_seed(seed)
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    rec = model.likelihood.rec(model.decode(z), x)
    return rec.mean(), per_dim_kl(mu, logvar).sum(-1).mean()


def test_vae_loss_is_the_negative_elbo():
    method = build("vae")
    x = torch.rand(7, *IMAGE)
    torch.manual_seed(3)
    parts = method.loss(x, at(0, 10))
    rec, kl = negative_elbo_parts(method, x, seed=3)
    torch.testing.assert_close(parts["rec"], rec)
    torch.testing.assert_close(parts["kl"], kl)
    torch.testing.assert_close(parts["loss"], rec + kl)
    assert kl > 0  # a fresh encoder's posteriors are not the prior


@pytest.mark.parametrize("beta", [0.0, 0.2, 1.0, 4.0])
def test_beta_vae_weighs_the_kl_by_beta(beta):
    method = build("beta-vae", beta=beta)
    x = torch.rand(7, *IMAGE)
    torch.manual_seed(5)
    parts = method.loss(x, at(4, 10))
    rec, kl = negative_elbo_parts(method, x, seed=5)
    torch.testing.assert_close(parts["loss"], rec + beta * kl)
    torch.testing.assert_close(parts["kl"], kl)  # the KL is reported unweighted


def test_beta_vae_at_beta_1_is_the_vae():
    """Same weights, same noise: β-VAE at β = 1 gives the VAE's loss and gradients."""
    vae, beta_vae = build("vae", seed=2), build("beta-vae", seed=2, beta=1.0)
    x = torch.rand(5, *IMAGE)
    losses = []
    for method in (vae, beta_vae):
        torch.manual_seed(8)
        loss = method.loss(x, at(0, 1))["loss"]
        loss.backward()
        losses.append((loss.detach(), [p.grad.clone() for p in method.model.parameters()]))
    torch.testing.assert_close(losses[0][0], losses[1][0])
    for a, b in zip(losses[0][1], losses[1][1]):
        torch.testing.assert_close(a, b)
