"""Known-answer tests for benchmark.evaluation.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from benchmark.ml.icnn import LIDDecoder
from benchmark.evaluation.metrics import (
    active_units,
    active_units_per_class,
    decoder_geometry,
    decoder_jacobian_singular_values,
    elbo,
    gaussian_log_density,
    importance_weighted_log_likelihood,
    kl_per_class,
    kl_per_dimension,
    kl_quantiles,
    kl_to_prior,
    mutual_information,
    noise_sensitivity,
)

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_posteriors(n: int, d: int, seed: int,
                      spread: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    mu = spread * torch.randn(n, d, generator=g, dtype=F64)
    logvar = torch.empty(n, d, dtype=F64).uniform_(-3.0, 1.0, generator=g)
    return mu, logvar


# --- prior-equal posteriors ------------------------------------------------------------

def test_posterior_equal_to_prior_is_fully_collapsed():
    mu, logvar = torch.zeros(2000, 8), torch.zeros(2000, 8)
    au = active_units(mu)
    assert au["fraction"] == 0.0 and au["count"] == 0
    assert torch.equal(kl_to_prior(mu, logvar), torch.zeros(2000))
    assert torch.equal(kl_per_dimension(mu, logvar), torch.zeros(8))
    for mixture in ("all", "batch"):
        # Both terms of the estimator use the same sample, so collapse gives 0 up to rounding.
        assert abs(mutual_information(mu, logvar, mixture, generator=gen())["mi"]) < 1e-9


# --- active units ----------------------------------------------------------------------

def test_active_units_counts_spread_coordinates():
    n, d, spread = 500, 10, [1, 4, 7]
    mu = torch.full((n, d), 3.0, dtype=F64)
    mu[:, spread] = 2.0 * torch.randn(n, len(spread), generator=gen(), dtype=F64) - 1.0
    mu[:, 9] += 0.05 * torch.randn(n, generator=gen(1), dtype=F64)  # variance 0.0025 < 0.01
    au = active_units(mu)
    assert au["count"] == 3 and au["fraction"] == pytest.approx(0.3) and au["threshold"] == 0.01
    expected = np.var(mu.numpy(), axis=0, ddof=1)
    np.testing.assert_allclose(au["variances"].numpy(), expected, rtol=1e-12)
    assert active_units(mu, threshold=100.0)["count"] == 0


def test_active_units_uses_unbiased_variance():
    # Values {0, 0.1}: unbiased variance 0.005, biased 0.0025.
    mu = torch.tensor([[0.0], [0.1]], dtype=F64)
    assert active_units(mu, threshold=0.004)["count"] == 1
    assert active_units(mu, threshold=0.006)["count"] == 0


def test_active_units_per_class():
    labels = torch.tensor([0] * 50 + [1] * 60 + [2] * 40 + [7])
    mu = torch.zeros(151, 4, dtype=F64)
    mu[:50, 0] = torch.randn(50, generator=gen(), dtype=F64)
    mu[50:110, 1:3] = torch.randn(60, 2, generator=gen(1), dtype=F64)
    mu[150] = 100.0  # the singleton class has no variance and is left out
    result = active_units_per_class(mu, labels)
    assert sorted(result) == [0, 1, 2]
    assert [result[c]["count"] for c in (0, 1, 2)] == [1, 2, 0]
    assert result[1]["fraction"] == 0.5
    assert result[0]["variances"][0] == pytest.approx(float(mu[:50, 0].var()))


# --- KL and densities ------------------------------------------------------------------

def test_kl_matches_torch_distributions():
    mu, logvar = random_posteriors(64, 6, seed=3)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    torch.testing.assert_close(kl_to_prior(mu, logvar), expected.sum(-1))
    torch.testing.assert_close(kl_per_dimension(mu, logvar), expected.mean(0))


def test_gaussian_log_density_matches_torch_with_broadcasting():
    mu, logvar = random_posteriors(5, 3, seed=4)
    z = torch.randn(4, 1, 3, generator=gen(5), dtype=F64)
    expected = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    out = gaussian_log_density(z, mu, logvar)
    assert out.shape == (4, 5)
    torch.testing.assert_close(out, expected)


def test_kl_quantiles():
    kl = torch.arange(101, dtype=F64) / 100  # 0.00, 0.01, ..., 1.00
    summary = kl_quantiles(kl)
    assert set(summary) == {"q05", "q25", "q50", "q75", "q95",
                            "frac_below_0.1", "frac_below_0.5", "frac_below_1.0"}
    for key, q in [("q05", 0.05), ("q25", 0.25), ("q50", 0.5), ("q75", 0.75), ("q95", 0.95)]:
        assert summary[key] == pytest.approx(q, abs=1e-12)
    # strictly below: the value equal to the threshold is not counted
    assert summary["frac_below_0.1"] == pytest.approx(10 / 101)
    assert summary["frac_below_0.5"] == pytest.approx(50 / 101)
    assert summary["frac_below_1.0"] == pytest.approx(100 / 101)
    custom = kl_quantiles(kl, quantiles=(0.1,), thresholds=(2,))
    assert custom == pytest.approx({"q10": 0.1, "frac_below_2": 1.0})


# --- mutual information ----------------------------------------------------------------

def dense_mi_terms(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The documented estimator written naively: per-example terms from N x N densities,
    with the mixture over all given rows and z = mu + std * eps."""
    std = torch.exp(0.5 * logvar)
    z = mu + std * eps
    own = Normal(mu, std).log_prob(z).sum(-1)
    pairwise = Normal(mu[None], std[None]).log_prob(z[:, None]).sum(-1)  # [i, j]
    return own - (torch.logsumexp(pairwise, dim=1) - math.log(len(mu)))


def test_mi_all_matches_dense_computation_and_chunking():
    mu, logvar = random_posteriors(157, 5, seed=6)
    eps = torch.randn(mu.shape, generator=gen(1), dtype=F64)  # the documented draw
    result = mutual_information(mu, logvar, generator=gen(1))
    assert result["mi"] == pytest.approx(float(dense_mi_terms(mu, logvar, eps).mean()), abs=1e-9)
    for mixture in ("all", "batch"):
        small, large = (mutual_information(mu, logvar, mixture, batch_size=40, generator=gen(2),
                                           chunk_size=chunk) for chunk in (7, 10_000))
        assert small["mi"] == pytest.approx(large["mi"], abs=1e-6)


def test_mi_batch_is_size_weighted_mean_over_consecutive_batches():
    mu, logvar = random_posteriors(130, 4, seed=7)
    eps = torch.randn(mu.shape, generator=gen(3), dtype=F64)
    result = mutual_information(mu, logvar, "batch", batch_size=50, generator=gen(3))
    # batches of 50, 50, 30; the mean over all per-example terms weights batches by size
    batches = zip(mu.split(50), logvar.split(50), eps.split(50))
    terms = torch.cat([dense_mi_terms(*batch) for batch in batches])
    assert result["mi"] == pytest.approx(float(terms.mean()), abs=1e-9)
    assert result["estimator"] == "aggregate-batch" and result["mixture_size"] == 50
    assert result["cap"] == pytest.approx(math.log(50))


def test_mi_deterministic_distinct_codes_reaches_log_n():
    n = 300
    mu = 10.0 * torch.randn(n, 8, generator=gen(), dtype=F64)
    logvar = torch.full((n, 8), -20.0, dtype=F64)
    result = mutual_information(mu, logvar, generator=gen(1))
    result.pop("se")
    assert result == {"mi": pytest.approx(math.log(n), abs=0.01), "estimator": "aggregate-all",
                      "cap": pytest.approx(math.log(n)), "mixture_size": n}
    for b in (1, 7, 50, 64, 300, 1000):
        batch = mutual_information(mu, logvar, "batch", batch_size=b, generator=gen(1))
        sizes = [len(chunk) for chunk in torch.arange(n).split(b)]
        expected = sum(s * math.log(s) for s in sizes) / n  # the last batch may be smaller
        assert batch["mi"] == pytest.approx(expected, abs=0.01)
        assert batch["mi"] <= math.log(min(b, n)) + 1e-6
        assert batch["cap"] == pytest.approx(math.log(min(b, n)))


@pytest.mark.parametrize("seed", range(4))
def test_mi_never_above_cap_on_random_inputs(seed):
    mu, logvar = random_posteriors(200, 3, seed=seed, spread=[0.1, 1.0, 5.0, 50.0][seed])
    for b in (10, 50, 128):
        result = mutual_information(mu, logvar, "batch", batch_size=b, generator=gen(seed))
        assert result["mi"] <= math.log(b) + 1e-9
    assert mutual_information(mu, logvar, generator=gen(seed))["mi"] <= math.log(200) + 1e-9


def test_mi_is_reproducible_given_a_seed():
    mu, logvar = random_posteriors(100, 4, seed=8)
    first = mutual_information(mu, logvar, generator=gen(5))["mi"]
    assert mutual_information(mu, logvar, generator=gen(5))["mi"] == first
    assert mutual_information(mu, logvar, generator=gen(6))["mi"] != first


def test_mi_rejects_unknown_mixture():
    with pytest.raises(ValueError, match="mixture"):
        mutual_information(torch.zeros(4, 2), torch.zeros(4, 2), "global")  # type: ignore[arg-type]


# --- likelihood estimators on a linear-Gaussian model -----------------------------------

class LinearGaussian:
    """x = W z + b + noise, z ~ N(0, I_2), x in R^5, noise ~ N(0, s2 I); W has orthogonal
    columns so the exact posterior N(M^-1 W^T (x - b) / s2, M^-1), M = I + W^T W / s2,
    is diagonal."""

    def __init__(self, n: int = 300, s2: float = 0.5):
        q, _ = torch.linalg.qr(torch.randn(5, 2, generator=gen(10), dtype=F64))
        self.W = q * torch.tensor([2.0, 1.0], dtype=F64)
        self.b = torch.randn(5, generator=gen(11), dtype=F64)
        self.s2 = s2
        z = torch.randn(n, 2, generator=gen(12), dtype=F64)
        noise = math.sqrt(s2) * torch.randn(n, 5, generator=gen(13), dtype=F64)
        self.x = z @ self.W.T + self.b + noise
        self.post_cov = torch.linalg.inv(torch.eye(2, dtype=F64) + self.W.T @ self.W / s2)
        assert abs(float(self.post_cov[0, 1])) < 1e-12

    def log_px(self) -> torch.Tensor:
        cov = self.W @ self.W.T + self.s2 * torch.eye(5, dtype=F64)
        return MultivariateNormal(self.b, cov).log_prob(self.x)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return Normal(z @ self.W.T + self.b, math.sqrt(self.s2)).log_prob(x).sum(-1)

    def exact_encoder(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x - self.b) @ self.W @ self.post_cov / self.s2
        return mean, torch.log(torch.diagonal(self.post_cov)).expand_as(mean)

    def imperfect_encoder(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.exact_encoder(x)
        return 0.7 * mean, logvar + math.log(1.5)


@pytest.fixture(scope="module")
def model() -> LinearGaussian:
    return LinearGaussian()


@pytest.mark.parametrize("num_samples", [1, 7, 23])
def test_iw_with_exact_posterior_is_exact_at_every_k(model, num_samples):
    # log w = log p(x, z) - log p(z | x) = log p(x) for every z: zero-variance weights.
    iw = importance_weighted_log_likelihood(model.x, model.exact_encoder, model.log_likelihood,
                                            num_samples=num_samples, chunk_size=10, batch_size=64,
                                            generator=gen())
    assert iw.shape == (300,) and iw.dtype == F64
    torch.testing.assert_close(iw, model.log_px(), rtol=0, atol=1e-10)


def test_elbo_and_iw_with_imperfect_posterior(model):
    log_px = model.log_px()
    exact = float(log_px.mean())
    # ELBO = log p(x) - KL(q(z|x) || p(z|x)), both closed form here.
    mean, logvar = model.imperfect_encoder(model.x)
    post_mean, post_logvar = model.exact_encoder(model.x)
    gap = kl_divergence(Normal(mean, torch.exp(0.5 * logvar)),
                        Normal(post_mean, torch.exp(0.5 * post_logvar))).sum(-1)
    assert float(gap.mean()) > 0.2
    bound = elbo(model.x, model.imperfect_encoder, model.log_likelihood, num_samples=200,
                 generator=gen(), batch_size=64)
    assert float(bound.mean()) == pytest.approx(float((log_px - gap).mean()), abs=0.02)

    errors = []
    for k in (1, 10, 500):
        iw = importance_weighted_log_likelihood(model.x, model.imperfect_encoder,
                                                model.log_likelihood, num_samples=k,
                                                generator=gen(k))
        errors.append(exact - float(iw.mean()))
        assert float(iw.mean()) < exact + 0.02  # a lower bound in expectation
    assert errors[0] > errors[1] > errors[2]
    assert errors[0] == pytest.approx(float(gap.mean()), abs=0.1)  # K = 1 is a one-sample ELBO
    assert abs(errors[2]) < 0.01


def test_iw_is_reproducible_and_leaves_no_graph(model):
    weights = torch.tensor(1.0, dtype=F64, requires_grad=True)

    def encoder(x):
        mean, logvar = model.imperfect_encoder(x)
        return weights * mean, logvar

    first = importance_weighted_log_likelihood(model.x, encoder, model.log_likelihood,
                                               num_samples=30, generator=gen(4))
    assert not first.requires_grad
    again = importance_weighted_log_likelihood(model.x, encoder, model.log_likelihood,
                                               num_samples=30, generator=gen(4))
    torch.testing.assert_close(first, again, rtol=0, atol=0)


# --- local collapse: KL per class -------------------------------------------------------

def test_kl_per_class():
    labels = torch.tensor([3, 0, 3, 1, 0, 3])
    kl = torch.tensor([1.0, 2.0, 3.0, 10.0, 4.0, 5.0])
    result = kl_per_class(kl, labels)
    assert result == {0: pytest.approx(3.0), 1: pytest.approx(10.0), 3: pytest.approx(3.0)}
    assert all(type(k) is int and type(v) is float for k, v in result.items())
    with pytest.raises(ValueError, match="same length"):
        kl_per_class(kl[:5], labels)


# --- decoder Jacobian singular values ---------------------------------------------------

def linear_decoder(W: torch.Tensor, shape: tuple[int, ...] | None = None):
    """x = W z (reshaped to ``shape``): Jacobian W everywhere."""
    def decode(z):
        x = z @ W.T
        return x if shape is None else x.reshape(-1, *shape)
    return decode


def matrix_with_singular_values(rows: int, values: list[float], seed: int) -> torch.Tensor:
    u, _ = torch.linalg.qr(torch.randn(rows, len(values), generator=gen(seed), dtype=F64))
    v, _ = torch.linalg.qr(torch.randn(len(values), len(values), generator=gen(seed + 1), dtype=F64))
    return u @ torch.diag(torch.tensor(values, dtype=F64)) @ v.T


@pytest.mark.parametrize("rows, cols", [(6, 3), (2, 4)])  # D > d (double backward), D <= d (reverse)
def test_jacobian_singular_values_of_linear_decoder(rows, cols):
    W = torch.randn(rows, cols, generator=gen(20), dtype=F64)
    z = 5 * torch.randn(7, cols, generator=gen(21), dtype=F64)
    decode = linear_decoder(W, (rows // 2, 2))
    sv = decoder_jacobian_singular_values(decode, z, batch_size=3)
    assert sv.shape == (7, min(rows, cols)) and sv.dtype == F64
    torch.testing.assert_close(sv, torch.linalg.svdvals(W).expand(7, -1))


def test_jacobian_singular_values_match_per_point_jacobians_of_an_mlp():
    torch.manual_seed(22)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5)).double()
    z = torch.randn(7, 3, generator=gen(23), dtype=F64)
    sv = decoder_jacobian_singular_values(net, z, batch_size=3)
    expected = torch.stack([torch.linalg.svdvals(torch.autograd.functional.jacobian(net, point))
                            for point in z])
    torch.testing.assert_close(sv, expected)
    assert (sv[:, 0] >= sv[:, 1]).all() and (sv[:, 1] >= sv[:, 2]).all()
    assert sv[:, 0].std() > 1e-3  # the points differ, so a mix-up across the batch would show


def test_jacobian_singular_values_of_lid_decoder_respect_inverse_lipschitz_bound():
    torch.manual_seed(24)
    L = 0.5
    dec = LIDDecoder(latent_dim=2, shape=(3,), hidden_latent=8, hidden_data=8,
                     lam1=math.sqrt(L), lam2=math.sqrt(L)).double()
    with torch.no_grad():  # random, not only initial, parameters
        for p in dec.parameters():
            p.add_(0.5 * torch.randn_like(p))
    z = 3 * torch.randn(32, 2, generator=gen(25), dtype=F64)
    with torch.no_grad():
        sv = decoder_jacobian_singular_values(dec, z, batch_size=10)
    assert sv.shape == (32, 2) and not sv.requires_grad
    assert dec.inverse_lipschitz == pytest.approx(L)
    assert sv[:, -1].min() >= L - 1e-9
    assert all(p.grad is None for p in dec.parameters())
    # the values are the Jacobian's: central differences at a few points
    h = 1e-6
    with torch.no_grad():
        columns = [(dec(z[:4] + h * e) - dec(z[:4] - h * e)) / (2 * h) for e in torch.eye(2, dtype=F64)]
    torch.testing.assert_close(sv[:4], torch.linalg.svdvals(torch.stack(columns, dim=2)),
                               rtol=1e-6, atol=1e-7)


def test_jacobian_of_a_decoder_that_ignores_z_is_zero():
    sv = decoder_jacobian_singular_values(lambda z: torch.ones(z.shape[0], 4), torch.randn(3, 2))
    assert torch.equal(sv, torch.zeros(3, 2, dtype=F64))


# --- decoder geometry -------------------------------------------------------------------

def test_decoder_geometry_of_isometric_and_scaled_linear_decoders():
    W = matrix_with_singular_values(5, [1.0, 1.0, 1.0], seed=26)  # orthonormal columns
    z = torch.randn(40, 3, generator=gen(27), dtype=F64)
    for scale in (1.0, 2.0):
        geo = decoder_geometry(linear_decoder(scale * W), z, generator=gen(28), pair_scale=0.3)
        for key in ("ratio_q05", "ratio_median", "ratio_q95", "sv_min_q05", "sv_max_q95",
                    "sv_min_median", "sv_max_median", "bilipschitz", "jacobian_bilipschitz"):
            assert geo[key] == pytest.approx(scale, abs=1e-9), key
    assert geo["pair_scale"] == 0.3 and geo["points"] == 40 and geo["pairs"] == 40
    assert geo["quantiles"] == [0.05, 0.95]


def test_decoder_geometry_quantiles_lie_within_singular_values():
    W = matrix_with_singular_values(5, [3.0, 0.5], seed=29)
    z = torch.randn(50, 2, generator=gen(30), dtype=F64)
    geo = decoder_geometry(linear_decoder(W), z, generator=gen(31), pairs_per_point=4)
    assert geo["pairs"] == 200 and geo["points"] == 50
    assert 0.5 - 1e-9 <= geo["ratio_q05"] < geo["ratio_median"] < geo["ratio_q95"] <= 3 + 1e-9
    assert geo["ratio_q05"] < 1.0 and geo["ratio_q95"] > 2.0  # random directions reach both ends
    assert geo["bilipschitz"] == max(1 / geo["ratio_q05"], geo["ratio_q95"])
    assert geo["sv_max_q95"] == pytest.approx(3.0) and geo["sv_min_q05"] == pytest.approx(0.5)
    assert geo["jacobian_bilipschitz"] == pytest.approx(3.0)
    again = decoder_geometry(linear_decoder(W), z, generator=gen(31), pairs_per_point=4)
    assert again == geo
    other = decoder_geometry(linear_decoder(W), z, generator=gen(32), quantiles=(0.1, 0.9))
    assert {"ratio_q10", "ratio_q90", "sv_min_q10", "sv_max_q90"} <= set(other)


def test_decoder_geometry_measures_pairs_at_pair_scale():
    # D(z) = ||z||^2: at a = 0, |D(a) - D(b)| / ||a - b|| = ||b||, exactly the pair scale.
    geo = decoder_geometry(lambda z: (z * z).sum(-1, keepdim=True), torch.zeros(10, 3, dtype=F64),
                           generator=gen(33), pair_scale=0.25)
    assert geo["ratio_q05"] == pytest.approx(0.25) and geo["ratio_q95"] == pytest.approx(0.25)
    assert geo["sv_max_median"] == 0.0 and geo["jacobian_bilipschitz"] == math.inf
    assert geo["bilipschitz"] == pytest.approx(4.0)


# --- noise sensitivity ------------------------------------------------------------------

def chi_mean(k: int) -> float:
    """E||eps|| for eps ~ N(0, I_k)."""
    return math.sqrt(2) * math.exp(math.lgamma((k + 1) / 2) - math.lgamma(k / 2))


def test_noise_sensitivity_of_isometric_linear_decoder():
    d = 4
    W = matrix_with_singular_values(10, [1.0] * d, seed=34)
    mu = torch.randn(500, d, generator=gen(35), dtype=F64)
    result = noise_sensitivity(linear_decoder(W, (2, 5)), mu, draws=8, generator=gen(36))
    assert result["variances"] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert result["draws"] == 8 and result["points"] == 500
    assert result["distance"][0] == 0.0 and result["diversity"][0] == 0.0
    scales = [math.sqrt(v) for v in result["variances"][1:]]
    per_scale = [dist / s for dist, s in zip(result["distance"][1:], scales)]
    assert per_scale == pytest.approx([per_scale[0]] * 5, rel=1e-9)  # one eps for every variance
    assert per_scale[0] == pytest.approx(chi_mean(d), rel=0.03)
    for div, s in zip(result["diversity"][1:], scales):
        # eps_i - eps_j ~ N(0, 2 I): mean pairwise distance sqrt(2) E||eps||
        assert div / s == pytest.approx(math.sqrt(2) * chi_mean(d), rel=0.03)


def test_noise_sensitivity_of_collapsed_decoder_is_zero():
    def constant(z):
        return torch.full((z.shape[0], 1, 3, 3), 0.7, dtype=z.dtype)

    result = noise_sensitivity(constant, torch.randn(20, 3), variances=(0.0, 0.5, 1.0), draws=3,
                               generator=gen(37), batch_size=7)
    assert result["distance"] == [0.0, 0.0, 0.0] and result["diversity"] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="draws"):
        noise_sensitivity(constant, torch.randn(20, 3), draws=1)


def test_noise_sensitivity_batches_and_seeds():
    torch.manual_seed(38)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 6)).double()
    mu = torch.randn(30, 3, generator=gen(39), dtype=F64)
    small, large = (noise_sensitivity(net, mu, draws=4, generator=gen(40), batch_size=b)
                    for b in (7, 1000))
    assert small["distance"] == pytest.approx(large["distance"], rel=1e-9)
    assert small["diversity"] == pytest.approx(large["diversity"], rel=1e-9)
    assert small["distance"][-1] > small["distance"][1] > 0
    assert all(p.grad is None for p in net.parameters())


def test_mi_stays_within_its_cap_for_near_deterministic_posteriors():
    """Posteriors like InfoVAE's in `remedies` (no KL term): distinct means of spread about 1 and
    some variances down to exp(-37). No per-example term can exceed log N, so neither can the
    mean, and the terms must agree with the direct (non-expanded) computation."""
    n, d = 400, 8
    g = gen(11)
    mu = torch.randn(n, d, generator=g, dtype=F64)
    logvar = -10.0 - 27.0 * torch.rand(n, d, generator=g, dtype=F64)  # exp(-10) .. exp(-37)
    result = mutual_information(mu, logvar, generator=gen(12))
    eps = torch.randn(mu.shape, generator=gen(12), dtype=F64)
    assert result["mi"] <= math.log(n) + 1e-9
    assert result["mi"] == pytest.approx(float(dense_mi_terms(mu, logvar, eps).mean()), abs=1e-6)
