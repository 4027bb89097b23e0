"""The report's small-sample statistics against known answers (exact tests, their smallest
attainable p, Cliff's delta, Holm, the fixed-seed bootstrap of a mean); the CI of a difference
is in test_intervals.py."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from benchmark.report.exact import (cliffs_delta, holm, mann_whitney, mean_ci, midranks, permutation_ci,
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
