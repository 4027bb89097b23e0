"""Values an estimator's own checks reject are flagged invalid in the record, with the reason
(benchmark.evaluation.evaluate.invalid_metrics; the report leaves them out of means and tests)."""

from __future__ import annotations

import math

import torch

from benchmark.evaluation import metrics
from benchmark.evaluation.evaluate import CHECK_SE, invalid_metrics


def test_mutual_information_reports_the_standard_error_of_its_per_example_mean():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.zeros(4000, 3), torch.zeros(4000, 3)  # every posterior is the prior: MI = 0
    out = metrics.mutual_information(mu, logvar, generator=g)
    # every per-example term is 0 up to rounding (EPYC: MI -1.0e-16, SE 7.1e-18): within its noise
    # plus the rounding floor the invalid check allows (1e-9 nats), and so valid
    assert out["se"] >= 0 and abs(out["mi"]) < CHECK_SE * out["se"] + 1e-9
    assert invalid_metrics({"mi": out["mi"]}, {"mi_se": out["se"], "mi_cap": math.log(4000)}) == {}
    spread = torch.randn(4000, 3, generator=g) * 3
    out = metrics.mutual_information(spread, torch.full((4000, 3), -4.0), generator=g)
    assert out["mi"] > 0 and 0 < out["se"] < 0.05 * out["mi"]


def test_a_slightly_negative_mi_within_its_noise_is_valid_and_a_far_negative_one_is_not():
    est = {"mi_se": 0.01, "mi_cap": math.log(1000)}
    assert invalid_metrics({"mi": -0.02}, est) == {}
    flagged = invalid_metrics({"mi": -3922.98}, est)
    assert set(flagged) == {"mi"} and "below 0" in flagged["mi"]
    assert "above its cap" in invalid_metrics({"mi": math.log(1000) + 1e-3}, est)["mi"]
    assert invalid_metrics({"mi": math.log(1000)}, est) == {}  # at the cap exactly: valid (and flagged "at cap" elsewhere)


def test_an_iw_nll_above_the_elbo_of_the_same_examples_beyond_its_noise_is_invalid():
    est = {"nll_check": {"neg_elbo": 700.0, "neg_elbo_se": 2.0}}
    assert invalid_metrics({"nll": 699.0}, est) == {}
    assert invalid_metrics({"nll": 705.0}, est) == {}  # within 3 standard errors of the single-sample -ELBO
    assert "above the -ELBO" in invalid_metrics({"nll": 918.0}, est)["nll"]


def test_non_finite_values_are_invalid():
    flagged = invalid_metrics({"kl": float("nan"), "rec": float("inf"), "au": 0.5}, {})
    assert flagged == {"kl": "not finite", "rec": "not finite"}
