"""The report's small-sample statistics (benchmark/report/exact.py) against known answers (exact
tests, their smallest attainable p, Cliff's delta, Holm, the fixed-seed bootstrap of a mean); and
the CI of a difference in means from inverting the exact permutation test (permutation_ci):
coverage under a shift model, agreement with the test's p, known answers and the accepted set."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from benchmark.report.exact import (TOLERANCE, cliffs_delta, holm, mann_whitney, mean_ci, midranks, permutation_ci,
                                    permutation_test)


def brute_force_p(a, b) -> float:
    """Two-sided permutation p of the difference in means by listing every split."""
    pooled, n = [*a, *b], len(a)
    observed = abs(np.mean(a) - np.mean(b))
    count = total = 0
    for members in itertools.combinations(range(len(pooled)), n):
        x = [pooled[i] for i in members]
        y = [pooled[i] for i in range(len(pooled)) if i not in members]
        count += abs(np.mean(x) - np.mean(y)) >= observed - 1e-12
        total += 1
    return count / total


def test_fully_separated_five_against_five():
    a, b = [6.0, 7.0, 8.0, 9.0, 10.0], [1.0, 2.0, 3.0, 4.0, 5.0]
    perm = permutation_test(a, b)
    assert perm.p == pytest.approx(2 / 252) and perm.p_min == pytest.approx(2 / 252) and perm.exact
    assert perm.splits == math.comb(10, 5)
    assert mann_whitney(a, b).p == pytest.approx(2 / 252)
    assert cliffs_delta(a, b) == 1.0 and cliffs_delta(b, a) == -1.0


def test_no_spread_is_still_an_effect():
    """lr-vae AU 1.000 in every seed against vae 0.156 in every seed: the clearest effect."""
    a, b = [1.0] * 5, [0.156] * 5
    assert permutation_test(a, b).p == pytest.approx(2 / 252)
    assert cliffs_delta(a, b) == 1.0
    assert permutation_ci(a, b) == pytest.approx((0.844, 0.844))  # no variation: the shift is known exactly
    assert permutation_test([0.5] * 3, [0.5] * 3).p == 1.0 and cliffs_delta([0.5] * 3, [0.5] * 3) == 0.0


def test_smallest_attainable_p_at_small_n():
    assert permutation_test([3.0, 4.0], [1.0, 2.0]).p_min == pytest.approx(1 / 3)  # 2 / C(4, 2)
    assert permutation_test([5.0, 6.0, 7.0], [1.0, 2.0, 3.0]).p_min == pytest.approx(0.1)  # 2 / C(6, 3)
    assert permutation_test([9.0], [1.0, 2.0, 3.0, 4.0]).p_min == pytest.approx(0.2)  # n = 1: 1 / 5


@pytest.mark.parametrize("sizes", [(5, 5), (3, 4), (2, 6), (4, 4)])
def test_mann_whitney_matches_scipy_exact_without_ties(sizes):
    rng = np.random.default_rng(sum(sizes))
    for _ in range(5):
        values = rng.permutation(20)[:sum(sizes)].astype(float)
        a, b = list(values[:sizes[0]]), list(values[sizes[0]:])
        expected = stats.mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue
        assert mann_whitney(a, b).p == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_permutation_p_is_the_brute_force_count(seed):
    rng = np.random.default_rng(seed)
    a, b = list(rng.normal(0.3, 1, 4)), list(rng.normal(0, 1, 5))
    assert permutation_test(a, b).p == pytest.approx(brute_force_p(a, b))


def test_cliffs_delta_known_cases():
    assert cliffs_delta([1, 2, 3, 4], [0, 2]) == pytest.approx(5 / 8)
    assert cliffs_delta([1, 2, 3], [2, 2, 2]) == 0.0
    assert list(midranks(np.array([3.0, 1.0, 3.0, 2.0]))) == [3.5, 1.0, 3.5, 2.0]


def test_holm_known_answer():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})


def test_mean_bootstrap_is_deterministic_and_needs_four_values():
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    first, second = mean_ci(a), mean_ci(a)
    assert first == second and first[0] < 3.0 < first[1]
    assert mean_ci([1.0, 2.0, 3.0]) is None


ALPHA = 0.05


def p_at(a, b, delta: float) -> float:
    """The permutation test's p for the shift ``delta``: a - delta against b."""
    return permutation_test([x - delta for x in a], b).p


def samples(seed: int, sizes: tuple[int, int]) -> list[tuple[list[float], list[float]]]:
    """Pairs of groups of ``sizes``: normal (shifted, so p lands on both sides of 0.05), small
    integers (many ties), AU-like fractions k / 32, and a group without variation."""
    rng = np.random.default_rng(seed)
    n, m = sizes
    out = []
    for shift in (0.0, 0.8, 1.5, 2.5):
        out.append((list(rng.normal(shift, 1, n)), list(rng.normal(0, 1, m))))
        out.append((list(rng.integers(0, 4, n) + 0.0), list(rng.integers(0, 3, m) + 0.0)))
        out.append((list(rng.integers(4, 18, n) / 32), list(rng.integers(2, 9, m) / 32)))
    out.append(([float(rng.integers(0, 3))] * n, list(rng.integers(0, 3, m) + 0.0)))
    return out


@pytest.mark.parametrize("draw", ["normal", "exponential"])
def test_covers_a_shift_at_least_95_percent_of_the_time(draw):
    """5 vs 5 under a shift model: the test rejects the true shift with probability at most
    12/252 = 0.048 (p <= 0.05 needs at most 12 of 252 splits), so coverage >= 0.952. With 4000
    replications its binomial standard error is sqrt(0.952 * 0.048 / 4000) = 0.0034: the bound
    0.935 is 5 standard errors below 0.952, while a percentile bootstrap (about 0.87-0.90 here)
    is 10 or more below it."""
    rng = np.random.default_rng(20_260_214)
    shift, reps = 0.7, 4000
    covered = 0
    for _ in range(reps):
        b = getattr(rng, draw)(size=5)
        a = getattr(rng, draw)(size=5) + shift
        low, high = permutation_ci(list(a), list(b))
        covered += low <= shift <= high
    assert covered / reps >= 0.935


@pytest.mark.parametrize("sizes", [(3, 3), (4, 6), (5, 5), (2, 6), (6, 4)])
def test_excludes_zero_exactly_when_the_test_rejects(sizes):
    rejected = []
    for a, b in samples(sum(sizes) * 7 + sizes[0], sizes):
        low, high = permutation_ci(a, b)
        p = permutation_test(a, b).p
        assert (not low <= 0.0 <= high) == (p <= ALPHA), (a, b, low, high, p)
        rejected.append(p <= ALPHA)
    assert sizes == (3, 3) or (any(rejected) and not all(rejected))  # both verdicts occur (3 vs 3: never p <= 0.05)


def test_agrees_with_the_monte_carlo_p_beyond_the_exact_limit():
    """11 vs 12 (C(23, 11) = 1352078 splits): the same fixed-seed sample of splits as the test."""
    rng = np.random.default_rng(11)
    verdicts = set()
    for shift in (0.0, 0.7, 0.9, 1.2):
        a, b = list(rng.normal(shift, 1, 11)), list(rng.normal(0, 1, 12))
        test = permutation_test(a, b)
        low, high = permutation_ci(a, b)
        assert not test.exact and (not low <= 0.0 <= high) == (test.p <= ALPHA)
        verdicts.add(test.p <= ALPHA)
        assert p_at(a, b, low) > ALPHA and p_at(a, b, high) > ALPHA
    assert verdicts == {True, False}


@pytest.mark.parametrize("sizes", [(4, 6), (5, 5), (2, 6), (6, 4)])
def test_is_the_set_of_shifts_the_test_accepts(sizes):
    """The ends are accepted and just beyond them rejected, and on a grid of shifts the accepted
    ones are exactly those inside: one interval (p falls monotonically away from the estimate),
    never a union of several. Grid points within the test's TOLERANCE of an end are left out."""
    for a, b in samples(sum(sizes), sizes):
        low, high = permutation_ci(a, b)
        step = 1e-6 * max(1.0, abs(low), abs(high))
        assert p_at(a, b, low) > ALPHA and p_at(a, b, high) > ALPHA
        assert p_at(a, b, low - step) <= ALPHA and p_at(a, b, high + step) <= ALPHA
        width = high - low + 1.0
        for delta in np.linspace(low - width, high + width, 121):
            if min(abs(delta - low), abs(delta - high)) > 1e3 * TOLERANCE * width:
                assert (p_at(a, b, delta) > ALPHA) == (low <= delta <= high), (a, b, delta)


def test_two_against_two_by_hand():
    """2 vs 2 (6 splits): a and b themselves count at any shift; the 4 mixed splits {a1, b1} /
    {a1, b2} and their mirrors differ in means by (a1 - a2 ± (b1 - b2)) / 2 whatever the shift,
    against |Δ - delta| for the observed one. At level 0.5 (p > 0.5: 4 of 6 splits) the CI is
    Δ ± (|a1 - a2| + |b1 - b2|) / 2 = 3.5 ± 1.5 here; at 95% (p >= 1/3 always) it is unbounded."""
    a, b = [3.0, 5.0], [0.0, 1.0]
    assert permutation_ci(a, b, 0.5) == pytest.approx((2.0, 5.0))
    assert permutation_ci(a, b) == (-math.inf, math.inf)


def test_unbounded_only_when_no_shift_reaches_the_level():
    assert permutation_ci([5.0, 6.0, 7.0], [1.0, 2.0, 3.0]) == (-math.inf, math.inf)  # 3 vs 3: p >= 2/20
    assert permutation_ci([9.0], [1.0, 2.0, 3.0, 4.0]) == (-math.inf, math.inf)  # 1 vs 4: p >= 1/5
    low, high = permutation_ci([5.0, 6.0], [1.0, 2.0, 3.0, 4.0, 2.5, 1.5])  # 2 vs 6: p can be 1/28
    assert 0 < low < 3.5 < high < math.inf


def test_groups_without_variation():
    """No variation: the shift is known exactly, so the CI is one point (p = 2/252 at any other)."""
    assert permutation_ci([1.0] * 5, [0.156] * 5) == pytest.approx((0.844, 0.844))
    assert permutation_ci([0.5] * 5, [0.5] * 5) == (0.0, 0.0)  # p = 1 at 0
    assert permutation_ci([0.5] * 3, [0.5] * 3) == (-math.inf, math.inf)


def test_fully_separated_five_against_five_excludes_zero():
    a, b = [6.0, 7.0, 8.0, 9.0, 10.0], [1.0, 2.0, 3.0, 4.0, 5.0]
    low, high = permutation_ci(a, b)
    assert 0 < low < 5.0 < high and permutation_test(a, b).p == pytest.approx(2 / 252)


def test_level_and_empty_groups_are_checked():
    with pytest.raises(ValueError):
        permutation_ci([1.0], [])
    with pytest.raises(ValueError):
        permutation_ci([1.0, 2.0], [3.0, 4.0], 1.0)
