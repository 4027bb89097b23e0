"""The end-of-run evaluation (benchmark/evaluation/evaluate.py): values an estimator's own checks
reject are flagged invalid in the record, with the reason (invalid_metrics; the report leaves them
out of means and tests); latent traversals and interpolations draw nothing from the evaluation's
random stream (so no other number changes); MI at its cap log N is flagged, on the test split or a
subset of the training split."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark import config as config_module
from benchmark.config import EvalConfig, ModelConfig
from benchmark.data.splits import DataSplit
from benchmark.evaluation import metrics
from benchmark.evaluation.evaluate import CHECK_SE, TRAVERSAL_VALUES, evaluate, invalid_metrics
from benchmark.ml.method import build_method

from toy_methods import build


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


def test_an_mi_noisier_than_its_whole_range_is_invalid_however_far_from_its_bounds():
    """quick-lid-init's gain-100 seed 0: -5914 nats with a standard error of 2873 is within 3
    standard errors of 0, but a noise wider than [0, log M] says nothing about MI."""
    cap = math.log(10_000)
    flagged = invalid_metrics({"mi": -5914.46}, {"mi_se": 2872.98, "mi_cap": cap})
    assert set(flagged) == {"mi"} and "noisier than the whole range" in flagged["mi"]
    assert "noisier" in invalid_metrics({"mi": 4.0}, {"mi_se": cap * 1.01, "mi_cap": cap})["mi"]
    assert invalid_metrics({"mi": 5.39}, {"mi_se": 2.48, "mi_cap": cap}) == {}  # noisy, but narrower than its range


def test_an_iw_nll_above_the_elbo_of_the_same_examples_beyond_its_noise_is_invalid():
    est = {"nll_check": {"neg_elbo": 700.0, "neg_elbo_se": 2.0}}
    assert invalid_metrics({"nll": 699.0}, est) == {}
    assert invalid_metrics({"nll": 705.0}, est) == {}  # within 3 standard errors of the single-sample -ELBO
    assert "above the -ELBO" in invalid_metrics({"nll": 918.0}, est)["nll"]


def test_non_finite_values_are_invalid():
    flagged = invalid_metrics({"kl": float("nan"), "rec": float("inf"), "au": 0.5}, {})
    assert flagged == {"kl": "not finite", "rec": "not finite"}


def _split(n: int = 40) -> DataSplit:
    g = torch.Generator().manual_seed(0)
    return DataSplit(torch.rand((n, 1, 28, 28), generator=g), torch.arange(n) % 10)


def test_traversals_and_interpolations_leave_every_number_alone(monkeypatch):
    torch.manual_seed(0)
    method = build_method("vae", {}, ModelConfig(latent_dim=4, options={"hidden": [16]}), (1, 28, 28))
    config = EvalConfig(nll_samples=4, nll_examples=8, geometry_points=4, noise_points=4, noise_draws=2)
    with_images = evaluate(method, _split(), config, torch.Generator().manual_seed(7))
    layout = with_images.estimators["latent_images"]
    assert len(layout["traversal_dims"]) == 4 and sorted(layout["traversal_dims"]) == [0, 1, 2, 3]
    assert with_images.images["traversals"].shape == (4 * len(TRAVERSAL_VALUES), 1, 28, 28)
    assert with_images.images["interpolations"].shape == (8 * len(TRAVERSAL_VALUES), 1, 28, 28)
    assert all(0 <= i < 40 for pair in layout["interpolation_pairs"] for i in pair)

    import benchmark.evaluation.evaluate as evaluation
    monkeypatch.setattr(evaluation, "_latent_images", lambda *args: None)  # the evaluation as before
    without = evaluate(method, _split(), config, torch.Generator().manual_seed(7))
    assert without.metrics == with_images.metrics and without.noise == with_images.noise
    assert set(with_images.images) - set(without.images) == {"traversals", "interpolations"}
    for name in without.images:
        assert torch.equal(without.images[name], with_images.images[name])


# --- MI at its cap log N: flagged in the records ------------------------------------------------

def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


QUICK_EVAL = {"nll_samples": 0, "geometry_points": 0, "noise_points": 0}  # only what MI needs


def toy_split(n: int, dtype: torch.dtype = torch.float32) -> DataSplit:
    """``n`` distinct 2-D points (i mod 250, i div 250) and labels i mod 3."""
    i = torch.arange(n)
    return DataSplit(torch.stack([i % 250, i // 250], 1).to(dtype), i % 3)


def vae_encoding(encode):
    """The toy vae of toy_methods.build with its encoder replaced by ``encode(x) -> (mu, logvar)``."""
    method = build("vae", "toy")
    method.model.encode = encode
    return method


def distinct_codes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic, far-apart codes: means 10 x apart (>= 10 units), variance e^-20."""
    assert x.dtype == torch.float32  # uint8 pixels are converted before encoding
    return 10.0 * x, torch.full_like(x, -20.0)


def prior_codes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros_like(x), torch.zeros_like(x)


def test_distinct_deterministic_codes_are_at_cap():
    split = toy_split(300)
    out = evaluate(vae_encoding(distinct_codes), split, EvalConfig(**QUICK_EVAL), gen())
    assert out.metrics["mi"] == pytest.approx(math.log(300), abs=0.01)
    assert out.metrics["mi_at_cap"] is True
    est = out.estimators
    assert est["mi_split"] == "test" and est["mi_examples"] == 300 and est["mi_mixture_size"] == 300
    assert est["mi_cap"] == pytest.approx(math.log(300)) and est["mi_cap_margin"] == config_module.MI_CAP_MARGIN
    assert est["mi_estimator"] == "aggregate-all"


def test_prior_posteriors_are_not_at_cap():
    out = evaluate(vae_encoding(prior_codes), toy_split(300), EvalConfig(**QUICK_EVAL), gen())
    assert abs(out.metrics["mi"]) < 1e-6 and out.metrics["mi_at_cap"] is False


def test_margin_and_subset_of_the_test_split():
    method, split = vae_encoding(distinct_codes), toy_split(300)
    out = evaluate(method, split, EvalConfig(mi_examples=100, **QUICK_EVAL), gen())
    assert out.estimators["mi_examples"] == 100 and out.estimators["mi_cap"] == pytest.approx(math.log(100))
    assert out.metrics["mi"] == pytest.approx(math.log(100), abs=0.01)
    assert out.estimators["examples"] == 300  # the other metrics keep the whole test split
    # a negative margin puts the cap out of reach: the flag follows mi >= cap - margin
    strict = evaluate(method, split, EvalConfig(mi_cap_margin=-0.5, **QUICK_EVAL), gen())
    assert strict.metrics["mi_at_cap"] is False and strict.estimators["mi_cap_margin"] == -0.5


def test_mi_on_a_subset_of_the_training_split():
    test, train = toy_split(300), toy_split(500, torch.uint8)  # uint8 pixels, as image sets keep them
    config = EvalConfig(mi_split="train", mi_examples=400, **QUICK_EVAL)
    out = evaluate(vae_encoding(distinct_codes), test, config, gen(), mi_x=train.x)
    est = out.estimators
    assert est["mi_split"] == "train" and est["mi_examples"] == 400 and est["mi_mixture_size"] == 400
    assert est["mi_cap"] == pytest.approx(math.log(400)) and est["examples"] == 300
    assert out.metrics["mi"] == pytest.approx(math.log(400), abs=0.01) and out.metrics["mi_at_cap"] is True
    with pytest.raises(ValueError, match="training split"):
        evaluate(vae_encoding(distinct_codes), test, config, gen())
