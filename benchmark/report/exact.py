"""Small-sample statistics for two groups of per-seed values (3-5 seeds is the normal case).

Everything here is exact or deterministic:

- :func:`permutation_test`: the two-sided exact permutation test of the difference in means
  (every split of the pooled values into groups of the original sizes), and the smallest p any
  split could give (with 5 vs 5 distinct values 2 / C(10, 5) = 2/252);
- :func:`mann_whitney`: the exact Mann-Whitney (Wilcoxon rank-sum) test on the same splits, with
  mid-ranks for ties (conditional on the ties); equal to scipy's exact test without ties;
- :func:`permutation_ci`: the CI of a shift in means from inverting that permutation test, so it
  excludes 0 exactly when the test's p is at most 1 - level;
- :func:`mean_ci`: the percentile bootstrap CI of one group's mean (figures only) from a fixed seed
  (identical on every run), only with at least :data:`MIN_BOOTSTRAP_N` values;
- :func:`cliffs_delta`: P(a > b) - P(a < b), which stays meaningful when neither group varies;
- :func:`holm`: Holm's step-down adjustment over a fixed family.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 200_000  # splits enumerated exactly; above, a fixed-seed Monte Carlo sample
MONTE_CARLO = 20_000
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20_260_101
MIN_BOOTSTRAP_N = 4  # fewer values: the percentile bootstrap's coverage is too poor to state a CI of a mean
TOLERANCE = 1e-9  # relative: statistics this close to the observed one count as equally extreme


@dataclass(frozen=True)
class TestResult:
    """A two-sided test: ``p``, the smallest p this test can give for these groups (``p_min``),
    the number of splits it counted and whether they were all of them (``exact``)."""

    p: float
    p_min: float
    splits: int
    exact: bool


@functools.lru_cache(maxsize=32)
def _splits(total: int, n: int) -> tuple[np.ndarray, bool]:
    """Boolean masks [S, total] of the group-a members: every split (exact) or a fixed-seed
    sample of :data:`MONTE_CARLO` splits plus the observed one first; cached, so read-only."""
    count = math.comb(total, n)
    exact = count <= EXACT_LIMIT
    if exact:
        masks = np.zeros((count, total), dtype=bool)
        for row, members in enumerate(itertools.combinations(range(total), n)):
            masks[row, list(members)] = True
    else:
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        masks = np.zeros((MONTE_CARLO + 1, total), dtype=bool)
        masks[0, :n] = True
        for row in range(1, MONTE_CARLO + 1):
            masks[row, rng.permutation(total)[:n]] = True
    masks.flags.writeable = False
    return masks, exact


def _two_sided(pooled: np.ndarray, n: int) -> TestResult:
    """p of the observed split (the first ``n`` of ``pooled`` are group a) by the sum of group a,
    two-sided around its expectation, and the smallest attainable p."""
    masks, exact = _splits(len(pooled), n)
    centre = n * float(pooled.mean())
    deviation = np.abs(masks.astype(float) @ pooled - centre)
    observed = abs(float(pooled[:n].sum()) - centre)
    scale = TOLERANCE * max(1.0, float(np.abs(pooled).max()) * n)
    count = int(np.sum(deviation >= observed - scale))
    extreme = int(np.sum(deviation >= float(deviation.max()) - scale))
    if exact:
        return TestResult(count / len(masks), extreme / len(masks), len(masks), True)
    # Monte Carlo: the observed split is among the sample (Phipson and Smyth's (b + 1) / (m + 1))
    return TestResult(count / len(masks), 1 / len(masks), len(masks), False)


def permutation_test(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Exact two-sided permutation test of mean(a) - mean(b) = 0 (exchangeable groups)."""
    if not a or not b:
        raise ValueError("both groups need at least one value")
    return _two_sided(np.asarray([*a, *b], dtype=float), len(a))


def midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..N, ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Exact two-sided Mann-Whitney test: the rank sum of ``a`` over every split (mid-ranks for ties)."""
    if not a or not b:
        raise ValueError("both groups need at least one value")
    return _two_sided(midranks(np.asarray([*a, *b], dtype=float)), len(a))


def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """Cliff's delta, P(a > b) - P(a < b) over all pairs, in [-1, 1]; the probability of
    superiority P(a > b) + P(a = b) / 2 is (delta + 1) / 2."""
    x, y = np.asarray(a, dtype=float)[:, None], np.asarray(b, dtype=float)[None, :]
    return float((np.sum(x > y) - np.sum(x < y)) / (x.size * y.size))


def permutation_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """CI for the shift delta = mean(a) - mean(b) by inverting :func:`permutation_test`: every delta
    with ``permutation_test([x - delta for x in a], b).p > 1 - level``, on the same splits (the
    same Monte Carlo sample beyond :data:`EXACT_LIMIT`). (-inf, inf) when no shift reaches that p
    (3 vs 3: p >= 2/20 at any shift); a single point when neither group varies.

    With a shifted by delta, the centred sum of a split s with k_s members of ``a`` is
    D_s = S_s - k_s delta - n (T - n delta) / N (S_s, T: sums at delta = 0). D_s^2 - D_obs^2 is a
    concave quadratic in delta (|d D_s / d delta| <= |d D_obs / d delta| = n m / N), so s counts
    (|D_s| >= |D_obs|) on the closed interval between its roots, D_s = D_obs and D_s = -D_obs,
    which holds the estimate (D_obs = 0 there); the observed split and, for n = m, its mirror count
    at any delta. So p falls monotonically away from the estimate, the accepted set is one closed
    interval, and its ends are the c-th smallest lower and c-th largest upper root, c the fewest
    splits with c / S > 1 - level. Ties within :data:`TOLERANCE` count as in the test: where its p
    at delta = 0 exceeds 1 - level, 0 is inside even if rounding put an end a hair beside it."""
    if not a or not b:
        raise ValueError("both groups need at least one value")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), not {level}")
    pooled = np.asarray([*a, *b], dtype=float)
    n, m = len(a), len(b)
    masks, _ = _splits(n + m, n)
    sums, k = masks.astype(float) @ pooled, masks[:, :n].sum(axis=1)  # [S] S_s, k_s
    observed, total = float(pooled[:n].sum()), float(pooled.sum())
    always = (k == n) | ((n == m) & (k == 0))
    same = (sums - observed) / np.where(always, 1, k - n)  # [S] delta where D_s = D_obs
    mirror = ((n + m) * (sums + observed) - 2 * n * total) / np.where(always, 1, (n + m) * k + n * (m - n))
    lower = np.where(always, -np.inf, np.minimum(same, mirror))  # [S] where s starts to count
    upper = np.where(always, np.inf, np.maximum(same, mirror))  # [S] and where it stops
    alpha = 1 - level
    needed = int(np.argmax(np.arange(1, len(masks) + 1) / len(masks) > alpha)) + 1  # fewest counted splits
    low, high = float(np.sort(lower)[needed - 1]), float(np.sort(upper)[len(masks) - needed])
    if permutation_test(a, b).p > alpha:  # the test's own verdict at 0, ties within TOLERANCE included
        low, high = min(low, 0.0), max(high, 0.0)
    return low + 0.0, high + 0.0  # + 0.0: no -0.0


def sample_mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and standard deviation (N-1 divisor) of ``values``: both None without values, the std
    None for one value."""
    if not values:
        return None, None
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return mean, std


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean of ``values``: :data:`BOOTSTRAP_RESAMPLES` resamples from
    the fixed :data:`BOOTSTRAP_SEED`; None with fewer than :data:`MIN_BOOTSTRAP_N` values."""
    if len(values) < MIN_BOOTSTRAP_N:
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    x = np.asarray(values, dtype=float)
    means = x[rng.integers(0, len(x), (BOOTSTRAP_RESAMPLES, len(x)))].mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values over the whole family ``pvalues`` (step-down, monotone,
    capped at 1; ties in p ordered by key)."""
    ordered = sorted(pvalues.items(), key=lambda kv: (kv[1], str(kv[0])))
    m, running, out = len(ordered), 0.0, {}
    for i, (key, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - i) * p))
        out[key] = running
    return out
