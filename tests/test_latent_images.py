"""Latent traversals and interpolations recorded at the end of a run: their layout, and that they
draw nothing from the evaluation's random stream (so no other number changes)."""

from __future__ import annotations

import torch

from benchmark.config import EvalConfig, ModelConfig
from benchmark.data.splits import DataSplit
from benchmark.ml.method import build_method
from benchmark.evaluation.evaluate import TRAVERSAL_VALUES, evaluate


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
