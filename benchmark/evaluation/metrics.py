"""Posterior-collapse metrics (definitions in docs/metrics.md) as pure functions on tensors.

Shapes: ``N`` examples, ``d`` latent dimensions. Every log density and KL is in nats.
Posteriors are diagonal Gaussians ``q(z|x) = N(mu, diag exp(logvar))`` and the prior is
``N(0, I)``. Nothing here knows about models, data sets or files; the likelihood
estimators take the encoder and the decoder's log-likelihood as callables.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import Tensor

Encode = Callable[[Tensor], tuple[Tensor, Tensor]]
"""``encode(x [B, ...]) -> (mu [B, d], logvar [B, d])``."""
LogLikelihood = Callable[[Tensor, Tensor], Tensor]
"""``log_likelihood(x [B, ...], z [S, B, d]) -> log p(x|z) [S, B]``, nats, full constants."""

_LOG_2PI = math.log(2 * math.pi)


def active_units(mu: Tensor, threshold: float = 0.01) -> dict:
    """Active units (Burda et al. 2016) over the whole evaluation set.

    ``mu`` [N, d]: posterior means, N >= 2. Unit u is active when the variance over the set
    of ``mu[:, u]`` (unbiased, N - 1 divisor) is >= ``threshold``.
    Returns ``{"fraction": float, "count": int, "variances": Tensor [d] float64,
    "threshold": float}``.
    """
    if mu.dim() != 2 or mu.shape[0] < 2:
        raise ValueError(f"active_units needs mu of shape [N >= 2, d], got {tuple(mu.shape)}")
    variances = mu.detach().double().var(dim=0, correction=1)
    count = int((variances >= threshold).sum())
    return {"fraction": count / mu.shape[1], "count": count, "variances": variances,
            "threshold": float(threshold)}


def _kl_elementwise(mu: Tensor, logvar: Tensor) -> Tensor:
    # expm1 keeps exp(logvar) - 1 - logvar accurate when logvar is near 0.
    return 0.5 * (mu * mu + torch.expm1(logvar) - logvar)


def kl_to_prior(mu: Tensor, logvar: Tensor) -> Tensor:
    """Per-example ``KL(q(z|x) || N(0, I))`` [N] in nats, from ``mu``, ``logvar`` [N, d]."""
    return _kl_elementwise(mu, logvar).sum(-1)


def kl_per_dimension(mu: Tensor, logvar: Tensor) -> Tensor:
    """Per-dimension KL to the prior averaged over examples [d] in nats (sums to the mean KL)."""
    return _kl_elementwise(mu, logvar).mean(0)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """``log N(z; mu, diag exp(logvar))`` summed over the last dimension, in nats.

    The three inputs broadcast against each other; the result has their broadcast shape
    without the last dimension.
    """
    return -0.5 * (_LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)


def _standard_log_density(eps: Tensor, logvar: Tensor) -> Tensor:
    """``log N(mu + exp(logvar / 2) * eps; mu, diag exp(logvar))`` from the noise ``eps``."""
    return -0.5 * (_LOG_2PI + logvar + eps * eps).sum(-1)


def _prior_log_density(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` summed over the last dimension."""
    return -0.5 * (_LOG_2PI + z * z).sum(-1)


def _log_mixture_density(z: Tensor, mu: Tensor, logvar: Tensor, chunk_size: int, own: Tensor) -> Tensor:
    """``log (1/M) sum_j N(z_i; mu_j, diag exp(logvar_j))`` [N] for ``z`` [N, d], ``mu`` [M, d],
    where ``z_i`` was drawn from component i and ``own`` [N] is ``log N(z_i; mu_i, ...)``.

    Expands the quadratic form into matrix products so each chunk costs a
    [chunk_size, M] matrix, never [chunk_size, M, d]. Use float64: the expansion cancels, most
    where a variance is tiny and ``z_i`` lies next to ``mu_i``; the own component (j = i) is
    therefore taken from ``own`` (computed from the noise, no cancellation), the others from the
    expansion (far from ``z_i`` where a variance is tiny, so their rounding is negligible).
    """
    shift = mu.mean(0)  # the density is translation invariant; centring reduces cancellation
    z, mu = z - shift, mu - shift
    precision = torch.exp(-logvar)
    weighted_mu = mu * precision
    const = -0.5 * (mu.shape[1] * _LOG_2PI + logvar.sum(-1) + (mu * weighted_mu).sum(-1))
    out = []
    for start in range(0, len(z), chunk_size):
        z_chunk = z[start:start + chunk_size]
        log_dens = torch.addmm(const, z_chunk, weighted_mu.T)
        log_dens.addmm_(z_chunk * z_chunk, precision.T, alpha=-0.5)
        log_dens.diagonal(offset=start).copy_(own[start:start + chunk_size])  # (r, start + r): z_i's own component
        out.append(torch.logsumexp(log_dens, dim=1))
    return torch.cat(out) - math.log(mu.shape[0])


def mutual_information(mu: Tensor, logvar: Tensor, mixture: Literal["all", "batch"] = "all",
                       batch_size: int = 50, generator: torch.Generator | None = None,
                       chunk_size: int = 1024) -> dict:
    """Mutual information ``I_q(x; z)`` in nats (Hoffman and Johnson 2016; He et al. 2019).

    ``mu``, ``logvar`` [N, d]: posteriors of the evaluation set. One ``z_i ~ q(z|x_i)`` per
    example, ``z_i = mu_i + exp(logvar_i / 2) * eps_i`` with ``eps`` drawn as one [N, d]
    float64 standard normal from ``generator``. The estimate is
    ``mean_i [log q(z_i|x_i) - log q(z_i)]`` with ``log q(z_i) = logsumexp_j log q(z_i|x_j)
    - log M`` over a mixture of M posteriors:

    - ``"all"``: the whole set (M = N), computed ``chunk_size`` rows at a time;
    - ``"batch"``: He et al.'s variant, consecutive batches of ``batch_size`` in the given
      order, each its own mixture; batches are averaged weighted by size.

    The first term is evaluated at the sample rather than in closed form: same expectation,
    but the noise cancels, so every per-example term is at most ``log M`` (the estimate never
    exceeds ``cap`` beyond rounding), prior-equal posteriors give 0 and distinct
    deterministic codes give ``log M``. It can be slightly negative and is not clipped.
    Returns ``{"mi": float, "se": float, "estimator": "aggregate-all" | "aggregate-batch",
    "cap": log(M), "mixture_size": M}`` (for "batch", ``M = min(batch_size, N)``); ``se`` is the
    standard error of the mean over the N per-example terms (0 for one example).
    """
    if mixture not in ("all", "batch"):
        raise ValueError(f"mixture must be 'all' or 'batch', got {mixture!r}")
    mu, logvar = mu.detach().double(), logvar.detach().double()
    n = mu.shape[0]
    eps = torch.randn(mu.shape, generator=generator, dtype=torch.float64, device=mu.device)
    z = mu + torch.exp(0.5 * logvar) * eps
    log_q_own = _standard_log_density(eps, logvar)
    size = n if mixture == "all" else min(batch_size, n)
    log_q_agg = torch.cat([
        _log_mixture_density(z_b, mu_b, lv_b, chunk_size, own_b)
        for z_b, mu_b, lv_b, own_b in zip(z.split(size), mu.split(size), logvar.split(size), log_q_own.split(size))
    ])
    terms = log_q_own - log_q_agg
    se = float(terms.std() / math.sqrt(n)) if n > 1 else 0.0
    return {"mi": float(terms.mean()), "se": se, "estimator": f"aggregate-{mixture}",
            "cap": math.log(size), "mixture_size": size}


def _sample_posterior(mu: Tensor, logvar: Tensor, num_samples: int,
                      generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """``z`` [S, B, d] ~ q(z|x) in ``mu``'s dtype, and the float64 noise ``eps`` behind it."""
    eps = torch.randn((num_samples, *mu.shape), generator=generator, dtype=mu.dtype,
                      device=mu.device)
    return mu + torch.exp(0.5 * logvar) * eps, eps.double()


IW_CHUNK, IW_BATCH = 100, 256  # IW-NLL: importance samples and examples decoded together


def importance_weighted_log_likelihood(x: Tensor, encode: Encode, log_likelihood: LogLikelihood,
                                       num_samples: int = 500, chunk_size: int = IW_CHUNK,
                                       batch_size: int = IW_BATCH,
                                       generator: torch.Generator | None = None) -> Tensor:
    """Importance-weighted estimate of ``log p(x)`` per example (Burda et al. 2016).

    ``log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K`` with
    ``z_k ~ q(z|x)``, K = ``num_samples`` drawn ``chunk_size`` at a time and combined by a
    running logsumexp. ``x`` [N, ...] is processed ``batch_size`` examples at a time.
    See :data:`Encode` and :data:`LogLikelihood` for the callables. Grad mode is the
    caller's; encoder outputs and the result are detached. Returns [N] float64, nats.
    """
    out = []
    for x_batch in x.split(batch_size):
        mu, logvar = (t.detach() for t in encode(x_batch))
        total = torch.full(mu.shape[:1], -math.inf, dtype=torch.float64, device=mu.device)
        for start in range(0, num_samples, chunk_size):
            z, eps = _sample_posterior(mu, logvar, min(chunk_size, num_samples - start), generator)
            log_w = (log_likelihood(x_batch, z).detach().double()
                     + _prior_log_density(z.double())
                     - _standard_log_density(eps, logvar.double()))
            total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
        out.append(total - math.log(num_samples))
    return torch.cat(out)


def elbo(x: Tensor, encode: Encode, log_likelihood: LogLikelihood, num_samples: int = 1,
         generator: torch.Generator | None = None, batch_size: int = 256) -> Tensor:
    """Per-example ELBO at beta = 1 [N] float64, nats: ``E_q[log p(x|z)] - KL(q(z|x) || p(z))``.

    The expectation averages ``num_samples`` draws; the KL is closed form. Same callables
    and grad-mode convention as :func:`importance_weighted_log_likelihood`.
    """
    out = []
    for x_batch in x.split(batch_size):
        mu, logvar = (t.detach() for t in encode(x_batch))
        z, _ = _sample_posterior(mu, logvar, num_samples, generator)
        reconstruction = log_likelihood(x_batch, z).detach().double().mean(0)
        out.append(reconstruction - kl_to_prior(mu.double(), logvar.double()))
    return torch.cat(out)


def active_units_per_class(mu: Tensor, labels: Tensor, threshold: float = 0.01) -> dict[int, dict]:
    """:func:`active_units` within each class: ``{label: result}`` for every label in
    ``labels`` [N] (integers) with at least 2 examples; ``mu`` [N, d]."""
    classes, counts = torch.unique(labels, return_counts=True)
    return {int(c): active_units(mu[labels == c], threshold)
            for c, count in zip(classes.tolist(), counts.tolist()) if count >= 2}


def kl_quantiles(kl: Tensor, quantiles: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95),
                 thresholds: tuple[float, ...] = (0.1, 0.5, 1.0)) -> dict[str, float]:
    """Local-collapse summary of per-example KL values ``kl`` [N] (nats).

    Keys ``"q05"``, ``"q50"``, ... (quantile in percent, linear interpolation) and
    ``"frac_below_0.1"``, ... (fraction of examples with KL strictly below the threshold).
    """
    kl = kl.detach().double().flatten()
    levels = torch.tensor(quantiles, dtype=torch.float64, device=kl.device)
    summary = {f"q{100 * q:02g}": float(v) for q, v in zip(quantiles, torch.quantile(kl, levels))}
    summary.update({f"frac_below_{t}": float((kl < t).double().mean()) for t in thresholds})
    return summary


def kl_per_class(kl: Tensor, labels: Tensor) -> dict[int, float]:
    """Mean per-example KL (nats) within each class: ``{label: mean}`` for every label in
    ``labels`` [N] (integers); ``kl`` [N] as from :func:`kl_to_prior`. Complements
    :func:`active_units_per_class`."""
    kl = kl.detach().double().flatten()
    labels = labels.flatten()
    if kl.shape != labels.shape:
        raise ValueError(f"kl and labels need the same length, got {kl.shape[0]} and {labels.shape[0]}")
    return {int(c): float(kl[labels == c].mean()) for c in torch.unique(labels).tolist()}


Decode = Callable[[Tensor], Tensor]
"""``decode(z [B, d]) -> output [B, *shape]``: a decoder's parameters or its mean."""


def _grad_or_zeros(output: Tensor, inputs: Tensor, grad_outputs: Tensor, **kwargs) -> Tensor:
    """``autograd.grad`` for one input, with zeros where the output does not depend on it."""
    if not output.requires_grad:
        return torch.zeros_like(inputs)
    (grad,) = torch.autograd.grad(output, inputs, grad_outputs, allow_unused=True, **kwargs)
    return torch.zeros_like(inputs) if grad is None else grad


def _decoder_jacobian(decode: Decode, z: Tensor) -> Tensor:
    """Per-point Jacobians [B, D, d] of the flattened output of ``decode`` at ``z`` [B, d].

    Examples must be independent in ``decode`` (no batch statistics), so the derivative of
    the batch sum over one output coordinate gives that row for every point at once.
    Reverse mode when D <= d (D backward passes); otherwise the double-backward trick,
    J v = d/du [(J^T u) . v], one backward with ``create_graph`` and then d backward passes
    (works through decoders that call ``torch.autograd.grad`` themselves, such as
    :class:`benchmark.ml.icnn.LIDDecoder`, where ``torch.func`` transforms may not).
    ``autograd.grad`` never accumulates into parameters' ``.grad``.
    """
    with torch.enable_grad():
        leaf = z.detach().clone().requires_grad_(True)
        out = decode(leaf)
        out = out.reshape(out.shape[0], -1)
        big_d, d = out.shape[1], leaf.shape[1]
        if big_d <= d:
            rows = []
            for k in range(big_d):
                onehot = torch.zeros_like(out)
                onehot[:, k] = 1
                rows.append(_grad_or_zeros(out, leaf, onehot, retain_graph=True))
            return torch.stack(rows, dim=1).detach()
        dummy = torch.zeros_like(out, requires_grad=True)
        vjp = _grad_or_zeros(out, leaf, dummy, create_graph=True)  # J^T u, linear in u
        cols = []
        for j in range(d):
            onehot = torch.zeros_like(vjp)
            onehot[:, j] = 1
            cols.append(_grad_or_zeros(vjp, dummy, onehot, retain_graph=j < d - 1))
        return torch.stack(cols, dim=2).detach()


def decoder_jacobian_singular_values(decode: Decode, z: Tensor, batch_size: int = 16) -> Tensor:
    """Singular values of the decoder Jacobian at each point, descending.

    ``z`` [M, d]; ``decode`` maps [B, d] -> [B, *shape] and treats examples independently;
    J(z) is the D x d Jacobian of the flattened output (D = prod(shape)). Points are taken
    ``batch_size`` at a time. Gradients are enabled internally (so the caller may be inside
    ``torch.no_grad()``, not ``torch.inference_mode()``); parameters' ``.grad`` is left
    untouched. Returns [M, min(D, d)] float64, in output units per latent unit.
    """
    if z.dim() != 2:
        raise ValueError(f"z must have shape [M, d], got {tuple(z.shape)}")
    return torch.cat([torch.linalg.svdvals(_decoder_jacobian(decode, chunk).double())
                      for chunk in z.split(batch_size)])


def _quantile_key(q: float) -> str:
    return f"q{100 * q:02g}"


def decoder_geometry(decode: Decode, z: Tensor, generator: torch.Generator | None = None,
                     pair_scale: float = 0.1, quantiles: tuple[float, float] = (0.05, 0.95),
                     pairs_per_point: int = 1, batch_size: int = 16) -> dict:
    """Local bi-Lipschitz picture of a decoder at sample points ``z`` [M, d] (posterior means).

    Jacobian part: per point the largest and smallest of the min(D, d) singular values of
    J(z) (:func:`decoder_jacobian_singular_values`); keys ``sv_max_median``,
    ``sv_max_<qhi>``, ``sv_min_median``, ``sv_min_<qlo>`` (``<q>`` formatted like
    :func:`kl_quantiles`: ``q05``, ``q95`` by default) and
    ``jacobian_bilipschitz = max(1 / sv_min_<qlo>, sv_max_<qhi>)``.

    Pair part (the LR-VAE code's estimate, docs/metrics.md): ``pairs_per_point`` pairs per point,
    a = z, b = a + pair_scale * u with u uniform on the unit sphere (from ``generator``);
    ratios ||D(a) - D(b)||_2 / ||a - b||_2 over the flattened outputs; keys ``ratio_<qlo>``,
    ``ratio_median``, ``ratio_<qhi>`` and ``bilipschitz = max(1 / ratio_<qlo>, ratio_<qhi>)``.
    Also ``pair_scale``, ``points`` (M), ``pairs`` and ``quantiles``. Quantiles use linear
    interpolation. A zero lower quantile gives an infinite bi-Lipschitz value (the store
    writes non-finite floats as null). Ratios are computed under ``torch.no_grad()``.
    """
    q_lo, q_hi = quantiles
    if not 0 <= q_lo <= q_hi <= 1:
        raise ValueError(f"quantiles must be (low, high) with 0 <= low <= high <= 1, got {quantiles}")
    lo, hi = _quantile_key(q_lo), _quantile_key(q_hi)
    sv = decoder_jacobian_singular_values(decode, z, batch_size)
    sv_max, sv_min = sv[:, 0], sv[:, -1]
    levels = torch.tensor([q_lo, 0.5, q_hi], dtype=torch.float64, device=sv.device)
    max_lo, max_med, max_hi = torch.quantile(sv_max, levels).tolist()
    min_lo, min_med, min_hi = torch.quantile(sv_min, levels).tolist()

    a = z.detach().repeat(pairs_per_point, 1)
    u = torch.randn(a.shape, generator=generator, dtype=a.dtype, device=a.device)
    b = a + pair_scale * u / u.norm(dim=1, keepdim=True)
    ratios = []
    with torch.no_grad():
        for a_chunk, b_chunk in zip(a.split(batch_size), b.split(batch_size)):
            gap = (decode(a_chunk) - decode(b_chunk)).flatten(1).double().norm(dim=1)
            ratios.append(gap / (a_chunk - b_chunk).double().norm(dim=1))
    r_lo, r_med, r_hi = torch.quantile(torch.cat(ratios), levels).tolist()

    def bilipschitz(low: float, high: float) -> float:
        return max(1 / low if low > 0 else math.inf, high)

    return {
        f"sv_max_{lo}": max_lo, "sv_max_median": max_med, f"sv_max_{hi}": max_hi,
        f"sv_min_{lo}": min_lo, "sv_min_median": min_med, f"sv_min_{hi}": min_hi,
        "jacobian_bilipschitz": bilipschitz(min_lo, max_hi),
        f"ratio_{lo}": r_lo, "ratio_median": r_med, f"ratio_{hi}": r_hi,
        "bilipschitz": bilipschitz(r_lo, r_hi),
        "pair_scale": float(pair_scale), "points": z.shape[0], "pairs": a.shape[0],
        "quantiles": [float(q_lo), float(q_hi)],
    }


def noise_sensitivity(decode_mean: Decode, mu: Tensor,
                      variances: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                      draws: int = 8, generator: torch.Generator | None = None,
                      batch_size: int = 256) -> dict:
    """How much the decoder mean moves when its input is perturbed (docs/metrics.md).

    ``mu`` [M, d]: evaluation posterior means. One noise tensor eps [draws, M, d] ~ N(0, I)
    is drawn from ``generator`` and shared by all variances (common random numbers), and
    ``decode_mean(mu + s * eps)`` with s = sqrt(variance) is compared with the noiseless
    ``decode_mean(mu)`` (s = 0 reuses it, so its distance and diversity are exactly 0):

    - ``distance``: ||x_s - x_0||_2 over the flattened output, averaged over points and draws;
    - ``diversity``: ||x_s^i - x_s^j||_2 averaged over the pairs i < j of draws of one point,
      then over points.

    Both are in the decoder mean's units (L2 over all data dimensions), one float per variance.
    Points are decoded ``batch_size`` at a time (times ``draws``) under ``torch.no_grad()``.
    Returns ``{"variances", "distance", "diversity": lists, "draws": int, "points": M}``.
    """
    if draws < 2:
        raise ValueError(f"noise_sensitivity needs draws >= 2 for the diversity, got {draws}")
    if mu.dim() != 2:
        raise ValueError(f"mu must have shape [M, d], got {tuple(mu.shape)}")
    if any(v < 0 for v in variances):
        raise ValueError(f"variances must be >= 0, got {list(variances)}")
    mu = mu.detach()
    m, d = mu.shape
    eps = torch.randn((draws, m, d), generator=generator, dtype=mu.dtype, device=mu.device)
    pairs = torch.triu_indices(draws, draws, offset=1, device=mu.device)
    distance = torch.zeros(len(variances), dtype=torch.float64, device=mu.device)
    diversity = torch.zeros(len(variances), dtype=torch.float64, device=mu.device)
    with torch.no_grad():
        for start in range(0, m, batch_size):
            mu_b, eps_b = mu[start:start + batch_size], eps[:, start:start + batch_size]
            b = mu_b.shape[0]
            x0 = decode_mean(mu_b).reshape(b, -1).double()
            for i, variance in enumerate(variances):
                if variance == 0:
                    continue
                z = (mu_b + math.sqrt(variance) * eps_b).reshape(draws * b, d)
                x = decode_mean(z).reshape(draws, b, -1).double()
                distance[i] += (x - x0).norm(dim=-1).sum()
                gaps = torch.cdist(x.transpose(0, 1), x.transpose(0, 1),
                                   compute_mode="donot_use_mm_for_euclid_dist")  # [b, draws, draws]
                diversity[i] += gaps[:, pairs[0], pairs[1]].mean(-1).sum()
    return {"variances": [float(v) for v in variances],
            "distance": (distance / (m * draws)).tolist(), "diversity": (diversity / m).tolist(),
            "draws": draws, "points": m}
