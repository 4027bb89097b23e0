"""Splits (benchmark/data/splits.py): seeded subsets, uint8 pixels converted to floats exactly (and
training on them the same as on floats)."""

from __future__ import annotations

import pytest
import torch

from benchmark.data import splits
from benchmark.data.catalog import load_dataset
from benchmark.data.splits import DataSplit

from fakes import write_fake_fashion


# Fresh cache; no system, cache or $BENCHMARK_DATA folders unless a test sets them.
pytestmark = pytest.mark.usefixtures("no_system_data")


# --- subsets ---------------------------------------------------------------------------------


def test_subset():
    split = DataSplit(torch.arange(100.0).unsqueeze(1), torch.arange(100))

    def draw(seed: int, n: int | None) -> DataSplit:
        return split.subset(n, torch.Generator().manual_seed(seed))

    a, b, c = draw(1, 30), draw(1, 30), draw(2, 30)
    assert len(a) == 30 and a.y.unique().numel() == 30
    assert torch.equal(a.x.squeeze(1).long(), a.y)  # rows stay paired
    assert torch.equal(a.y, b.y) and not torch.equal(a.y, c.y)
    assert draw(1, None) is split and draw(1, 100) is split and draw(1, 500) is split
    with pytest.raises(ValueError):
        draw(1, -1)


# --- uint8 storage ---------------------------------------------------------------------------


def test_as_float_is_exact_and_chunked(monkeypatch):
    x = torch.arange(256, dtype=torch.uint8).repeat(10).reshape(10, 1, 16, 16)
    monkeypatch.setattr(splits, "_CONVERT_CHUNK", 300)  # several chunks of one row
    out = DataSplit(x, torch.zeros(10, dtype=torch.long)).as_float()
    assert out.x.dtype == torch.float32
    assert torch.equal(out.x, x.float() / 255)
    floats = DataSplit(torch.rand(3, 2), torch.zeros(3, dtype=torch.long))
    assert floats.as_float() is floats


def test_training_on_uint8_pixels_matches_float(tmp_path):
    """The runner keeps an image training split as uint8 (a quarter of the device memory) and the
    trainer converts each batch: the same training, bit for bit, as on the float split."""
    from benchmark.config import ModelConfig, TrainConfig
    from benchmark.ml.method import build_method
    from benchmark.ml.train import Trainer

    write_fake_fashion(tmp_path, gz=False, n_train=100)
    pixels = load_dataset("fashion-mnist", data_root=tmp_path, float_train=False)
    floats = load_dataset("fashion-mnist", data_root=tmp_path)
    assert pixels.train.x.dtype == torch.uint8 and pixels.test.x.dtype == torch.float32
    assert torch.equal(splits.to_unit(pixels.train.x), floats.train.x)
    assert load_dataset("pinwheel", train_size=10, float_train=False).train.x.dtype == torch.float32
    means = []
    for ds in (pixels, floats):
        torch.manual_seed(0)
        method = build_method("vae", {}, ModelConfig(arch="mlp-shallow", latent_dim=2, options={"width": 8}), ds.shape)
        trainer = Trainer([method], [ds.train.x], TrainConfig(epochs=2, batch_size=32), [torch.Generator().manual_seed(1)])
        means.append([trainer.run_epoch() for _ in range(2)])
    assert means[0] == means[1]
