"""Free bits (methods/free_bits.py): no KL gradient below the floor lam, the ordinary one above; per
group and per example; the group size must divide the latent size."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import GridError

from image_methods import IMAGE, at, build, module, per_dim_kl


def posteriors(b: int = 16, d: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Posteriors whose batch-mean KL is small in dims 0-2 (means ~0.1) and large in dims 3-5."""
    generator = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.1, 0.1, 0.1, 2.0, 2.0, 2.0])[:d]
    mu = (torch.randn(b, d, generator=generator, dtype=torch.float64) * scale).requires_grad_()
    logvar = (0.05 * torch.randn(b, d, generator=generator, dtype=torch.float64)).requires_grad_()
    return mu, logvar


def test_free_bits_gives_no_gradient_below_lam_and_the_kl_gradient_above():
    free_bits_kl = module("free-bits").free_bits_kl
    mu, logvar = posteriors()
    batch_kl = per_dim_kl(mu, logvar).mean(0)
    lam = 0.5
    assert (batch_kl[:3] < lam).all() and (batch_kl[3:] > lam).all()
    term = free_bits_kl(mu, logvar, lam)
    assert float(term.detach()) == pytest.approx(3 * lam + float(batch_kl[3:].detach().sum()))
    grad_mu, grad_logvar = torch.autograd.grad(term, (mu, logvar))
    plain_mu, plain_logvar = torch.autograd.grad(per_dim_kl(mu, logvar).sum(-1).mean(), (mu, logvar))
    assert (grad_mu[:, :3] == 0).all() and (grad_logvar[:, :3] == 0).all()
    torch.testing.assert_close(grad_mu[:, 3:], plain_mu[:, 3:])
    torch.testing.assert_close(grad_logvar[:, 3:], plain_logvar[:, 3:])


def test_free_bits_groups_and_per_example_hinge():
    free_bits_kl = module("free-bits").free_bits_kl
    mu, logvar = posteriors()
    kl = per_dim_kl(mu, logvar)
    grouped = free_bits_kl(mu, logvar, 1.0, group_size=3)  # groups {0,1,2} (small) and {3,4,5}
    assert float(grouped.detach()) == pytest.approx(1.0 + float(kl[:, 3:].sum(-1).mean().detach()))
    assert all(g is None or (g[:, :3] == 0).all()
               for g in torch.autograd.grad(grouped, (mu, logvar), allow_unused=True))
    per_example = free_bits_kl(mu, logvar, 0.01, hinge="example")
    assert float(per_example.detach()) == pytest.approx(float(kl.clamp(min=0.01).sum(-1).mean().detach()))
    (grad_mu,) = torch.autograd.grad(per_example, mu)
    assert ((grad_mu == 0) == (kl < 0.01)).all() and (kl < 0.01).any() and (kl > 0.01).any()


def test_free_bits_loss_and_group_size_check():
    method = build("free-bits", lam=0.3)
    parts = method.loss(torch.rand(8, *IMAGE), at(0, 10))
    torch.testing.assert_close(parts["loss"], parts["rec"] + parts["kl_free_bits"])
    assert float(parts["kl_free_bits"].detach()) >= 4 * 0.3
    with pytest.raises(GridError, match="group_size = 3 does not divide latent_dim = 4"):
        build("free-bits", group_size=3)
