import math

import pytest
import torch

from benchmark.ml.icnn import ICNN, BrenierMap, InjectiveLift, LIDDecoder, initial_log_weight


def midpoint_gaps(f: ICNN, dim: int, lines: int = 256) -> torch.Tensor:
    """(F(a) + F(b)) / 2 - F((a + b) / 2) on random lines; >= 0 everywhere iff convex there."""
    a, b = 3 * torch.randn(2, lines, dim, dtype=torch.float64)
    with torch.no_grad():
        return (f(a) + f(b)) / 2 - f((a + b) / 2)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dim, num_layers", [(1, 1), (3, 2), (10, 3)])
def test_icnn_is_convex_along_random_lines(seed, dim, num_layers):
    torch.manual_seed(seed)
    f = ICNN(dim, 16, num_layers).double()
    with torch.no_grad():  # random, not only initial, parameters
        for p in f.parameters():
            p.add_(torch.randn_like(p))
    assert f(torch.randn(5, dim, dtype=torch.float64)).shape == (5,)
    assert midpoint_gaps(f, dim).min() >= -1e-9
    assert all(bool((w >= 0).all()) for w in f.weights())
    assert len(f.weights()) == num_layers


def test_convexity_check_has_teeth_with_negative_weights():
    violated = False
    for seed in range(5):
        torch.manual_seed(seed)
        f = ICNN(3, 16, 2).double()
        positive = f.weights
        f.weights = lambda: [-2 * w for w in positive()]
        violated |= bool(midpoint_gaps(f, 3).min() < -1e-6)
    assert violated


def pair_gaps(g: BrenierMap, dim: int, pairs: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    a = 2 * torch.randn(pairs, dim, dtype=torch.float64)
    b = a + torch.randn(pairs, dim, dtype=torch.float64) * torch.rand(pairs, 1, dtype=torch.float64)
    with torch.no_grad():
        inner = ((g(a) - g(b)) * (a - b)).sum(-1)
    return inner, (a - b).square().sum(-1)


@pytest.mark.parametrize("lam", [0.0, 0.3, 2.0])
@pytest.mark.parametrize("seed", range(3))
def test_brenier_map_is_strongly_monotone(lam, seed):
    torch.manual_seed(seed)
    g = BrenierMap(4, 16, strong_convexity=lam).double()
    inner, sq = pair_gaps(g, 4)
    assert (inner - lam * sq).min() >= -1e-9


def test_monotonicity_check_has_teeth_with_negative_weights():
    violated = False
    for seed in range(5):
        torch.manual_seed(seed)
        g = BrenierMap(4, 16, strong_convexity=0.0).double()
        positive = g.potential.weights
        g.potential.weights = lambda: [-2 * w for w in positive()]
        inner, _ = pair_gaps(g, 4)
        violated |= bool(inner.min() < -1e-6)
    assert violated


def test_brenier_map_is_the_gradient_of_the_potential():
    torch.manual_seed(0)
    g = BrenierMap(3, 8, strong_convexity=0.5).double()
    u = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    potential = g.potential(u) + 0.25 * u.square().sum(-1)
    (expected,) = torch.autograd.grad(potential.sum(), u)
    torch.testing.assert_close(g(u), expected)


def test_fixed_lift_is_zero_padding():
    lift = InjectiveLift(2, 5)
    y = torch.randn(3, 2)
    torch.testing.assert_close(lift(y), torch.cat([y, torch.zeros(3, 3)], -1))
    torch.testing.assert_close(lift.matrix(), torch.eye(5, 2))
    assert lift.sigma_min == 1.0 and not list(lift.parameters())


def test_trainable_lift_singular_values_are_clamped():
    torch.manual_seed(0)
    lift = InjectiveLift(4, 6, trainable=True, s_min=0.8, s_max=1.1)
    with torch.no_grad():
        lift.raw.mul_(torch.logspace(-2, 2, 4))  # raw singular values far outside the bounds
    s = torch.linalg.svdvals(lift.matrix())
    assert s.min() >= 0.8 - 1e-5 and s.max() <= 1.1 + 1e-5 and lift.sigma_min == 0.8
    y = torch.randn(3, 4)
    torch.testing.assert_close(lift(y), y @ lift.matrix().T)
    lift(y).sum().backward()
    assert torch.isfinite(lift.raw.grad).all()


def test_lift_needs_data_at_least_as_large_as_latents():
    with pytest.raises(ValueError, match="D >= latent size d"):
        InjectiveLift(4, 2)


@pytest.mark.parametrize("trainable_lift", [False, True])
@pytest.mark.parametrize("latent_dim, shape", [(2, (2,)), (3, (1, 28, 28))])
def test_decoder_is_inverse_lipschitz(latent_dim, shape, trainable_lift):
    torch.manual_seed(0)
    decoder = LIDDecoder(latent_dim, shape, 16, 16, lam1=0.6, lam2=0.4, trainable_lift=trainable_lift,
                         s_min=0.5, s_max=2.0).double()
    assert decoder.inverse_lipschitz == pytest.approx(0.6 * 0.4 * (0.5 if trainable_lift else 1.0))
    a = torch.randn(512, latent_dim, dtype=torch.float64)
    b = a + 10 ** torch.empty(512, 1, dtype=torch.float64).uniform_(-3, 0) * torch.randn_like(a)
    with torch.no_grad():
        da, db = decoder(a), decoder(b)
    assert da.shape == (512, *shape)
    ratio = (da - db).flatten(1).norm(dim=-1) / (a - b).norm(dim=-1)
    assert ratio.min() >= decoder.inverse_lipschitz * (1 - 1e-9)


@pytest.mark.parametrize("training", [True, False])
def test_decoder_under_no_grad_matches_grad_mode(training):
    torch.manual_seed(0)
    decoder = LIDDecoder(3, (1, 4, 4), 8, 8, lam1=0.3, lam2=0.2).train(training)
    z = torch.randn(5, 3)
    with torch.no_grad():
        quiet = decoder(z)
    assert not quiet.requires_grad
    loud = decoder(z.requires_grad_(True))
    torch.testing.assert_close(quiet, loud)
    loud.square().sum().backward()  # the second-order graph reaches every parameter and z
    assert z.grad is not None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.parameters())


def test_set_strong_convexity_is_saved_in_the_state_dict():
    decoder = LIDDecoder(2, (3,), 4, 4)
    decoder.set_strong_convexity(0.5, 2.0)
    assert decoder.inverse_lipschitz == 1.0
    fresh = LIDDecoder(2, (3,), 4, 4)
    fresh.load_state_dict(decoder.state_dict())
    assert fresh.inverse_lipschitz == 1.0


def jacobian_scale(f, dim: int, points: int = 4) -> float:
    """Median over random inputs of ||J v|| for random unit directions v (a map's gain)."""
    torch.manual_seed(1)
    u, v = torch.randn(points, dim), torch.randn(points, dim)
    _, jv = torch.autograd.functional.jvp(f, u, v / v.norm(dim=-1, keepdim=True))
    return float(jv.flatten(1).norm(dim=-1).median())


def test_initial_log_weight_schemes():
    assert initial_log_weight("inverse-width", 784, 512, 2) == pytest.approx(-math.log(512))
    assert initial_log_weight("reference", 784, 512, 2) == pytest.approx(-4.0)
    assert initial_log_weight("reference", 784, 512, 2, gain=2.0) == pytest.approx(-4.0 + math.log(2))
    assert initial_log_weight("fan-in", 784, 512, 2) == pytest.approx(0.5 * math.log(1.5 * 784) - math.log(512))
    with pytest.raises(ValueError, match="gain"):
        initial_log_weight("fan-in", 2, 8, 2, gain=0.0)
    with pytest.raises(ValueError, match="unknown ICNN init"):
        initial_log_weight("bogus", 2, 8, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("in_dim, hidden", [(2, 512), (32, 512), (784, 512), (784, 1024), (32, 64)])
def test_fan_in_init_gives_each_brenier_map_a_unit_scale_jacobian(in_dim, hidden, num_layers):
    torch.manual_seed(0)
    assert 0.05 <= jacobian_scale(BrenierMap(in_dim, hidden, num_layers=num_layers), in_dim, points=16) <= 20


@pytest.mark.parametrize("latent_dim, shape", [(32, (1, 28, 28)), (2, (2,)), (16, (3, 16, 16))])
def test_lid_decoder_depends_on_z_at_init_like_an_mlp_decoder(latent_dim, shape):
    """The LID decoder's Jacobian at init is within a factor 10 of the plain 2 x 512 MLP decoder's;
    the old inverse-width init (W = 1/width) made it ~1e-6 for 28x28 images: constant in z."""
    from benchmark.ml.models import MLPArch

    torch.manual_seed(0)
    _, mlp_decoder = MLPArch([512, 512]).build(shape, latent_dim)
    reference = jacobian_scale(mlp_decoder, latent_dim)
    lid = jacobian_scale(LIDDecoder(latent_dim, shape, 512, 512), latent_dim)
    assert 0.1 <= lid / reference <= 10, (lid, reference)
    if shape == (1, 28, 28):
        old = jacobian_scale(LIDDecoder(latent_dim, shape, 512, 512, init="inverse-width"), latent_dim)
        assert old / reference < 1e-3  # the degenerate init this test guards against


@pytest.mark.parametrize("gain", [0.25, 4.0])
def test_init_gain_scales_each_map_linearly(gain):
    torch.manual_seed(0)
    base = jacobian_scale(BrenierMap(32, 256), 32)
    torch.manual_seed(0)
    scaled = jacobian_scale(BrenierMap(32, 256, gain=gain), 32)
    assert scaled / base == pytest.approx(gain, rel=0.35)
