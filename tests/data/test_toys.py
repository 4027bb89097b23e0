"""The 2-D toy sets (benchmark/data/toys.py): shapes, determinism and the geometry of each."""

from __future__ import annotations

import pytest
import torch

from benchmark.data import catalog, toys
from benchmark.data.catalog import load_dataset


# Fresh cache; no system, cache or $BENCHMARK_DATA folders unless a test sets them.
pytestmark = pytest.mark.usefixtures("no_system_data")


@pytest.mark.parametrize("name, num_classes", [("pinwheel", 5), ("chessboard", 8), ("gaussian-mixture", 8)])
def test_toy_shapes_and_determinism(name, num_classes):
    ds = load_dataset(name, seed=0)
    assert ds.shape == (2,) and ds.num_classes == num_classes
    assert (len(ds.train), len(ds.test)) == (toys.TOY_TRAIN_SIZE, toys.TOY_TEST_SIZE)
    for split in (ds.train, ds.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.y.min() >= 0 and split.y.max() < num_classes
        assert split.x.abs().max() < 10 and 0.3 < split.x.std() < 3
    assert not torch.equal(ds.train.x[: toys.TOY_TEST_SIZE], ds.test.x)
    catalog._CACHE.clear()
    assert torch.equal(load_dataset(name, seed=0).train.x, ds.train.x)
    assert not torch.equal(load_dataset(name, seed=1).train.x, ds.train.x)


def test_chessboard_in_dark_cells():
    ds = load_dataset("chessboard", seed=3)
    for split in (ds.train, ds.test):
        corner = torch.tensor(toys.CHESSBOARD_CELLS, dtype=torch.float32)[split.y] - 2
        assert ((split.x >= corner) & (split.x <= corner + 1)).all()
        i, j = (split.x + 2).floor().clamp(0, 3).long().unbind(1)
        assert ((i + j) % 2 == 0).all()
        assert split.y.bincount().numel() == 8


def test_gaussian_mixture_imbalanced():
    y = load_dataset("gaussian-mixture").train.y
    counts = y.bincount(minlength=8).sort(descending=True).values
    assert counts[:2].sum() > 0.9 * len(y)
    assert (counts[2:] > 0).all()


def test_pinwheel_arms():
    ds = load_dataset("pinwheel")
    y, x = ds.train.y, ds.train.x
    assert y.bincount().numel() == 5 and (y.bincount() > 1000).all()
    # every point lies on its arm's spiral: angle = 2 pi arm / 5 + 0.25 exp(radius), up to the tangential noise
    radius = x.norm(dim=1)
    residual = torch.atan2(x[:, 1], x[:, 0]) - (2 * torch.pi * y / 5 + 0.25 * radius.exp())
    residual = torch.remainder(residual + torch.pi, 2 * torch.pi) - torch.pi
    assert residual.abs().quantile(0.99) < 0.3
    assert 0.9 < radius.mean() < 1.1
