"""Tests for benchmark.ml.images: the PNG grid writer and the noise-sensitivity grid."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import torch

from benchmark.ml.images import image_grid, noise_grid, save_image_grid


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_save_image_grid_layout_values_and_deterministic_bytes(tmp_path):
    images = torch.rand(5, 1, 4, 3, generator=gen())
    images[0, 0, 0, 0], images[0, 0, 0, 1] = -1.0, 2.0  # clamped to 0 and 1
    first = save_image_grid(images, tmp_path / "a" / "grid.png", nrow=2)
    second = save_image_grid(images, tmp_path / "b.png", nrow=2)
    assert first == tmp_path / "a" / "grid.png"
    assert first.read_bytes() == second.read_bytes()
    assert b"Software" not in first.read_bytes() and b"tIME" not in first.read_bytes()
    read = matplotlib.image.imread(first)
    # 3 rows of 2 tiles, 2-pixel padding: height 3 * (4 + 2) + 2, width 2 * (3 + 2) + 2
    assert read.shape[:2] == (20, 12)
    grey = read[..., 0]
    np.testing.assert_array_equal(read[..., 1], grey)
    expected = images.clamp(0, 1)
    tile = lambda i: grey[2 + (i // 2) * 6: 6 + (i // 2) * 6, 2 + (i % 2) * 5: 5 + (i % 2) * 5]
    for i in range(5):
        np.testing.assert_allclose(tile(i), expected[i, 0].numpy(), atol=0.5 / 255 + 1e-6)
    assert grey[0, 0] == pytest.approx(128 / 255)  # padding
    np.testing.assert_allclose(tile(5), 128 / 255)  # the empty sixth slot


def test_save_image_grid_colour_and_other_inputs_change_bytes(tmp_path):
    images = torch.rand(3, 3, 5, 5, generator=gen(1))
    path = save_image_grid(images, tmp_path / "rgb.png", nrow=3)
    read = matplotlib.image.imread(path)
    assert read.shape[:2] == (9, 23)
    np.testing.assert_allclose(read[2:7, 2:7, :3], images[0].permute(1, 2, 0).numpy(),
                               atol=0.5 / 255 + 1e-6)
    images[1, 2, 0, 0] = 1 - images[1, 2, 0, 0]
    changed = save_image_grid(images, tmp_path / "other.png", nrow=3)
    assert changed.read_bytes() != path.read_bytes()
    with pytest.raises(ValueError, match="shape"):
        image_grid(torch.rand(2, 2, 4, 4), nrow=1)


def test_noise_grid_layout_and_non_image_data():
    W = torch.randn(4, 3, generator=gen(2))
    images = lambda z: (z @ W.T).reshape(-1, 1, 2, 2)
    mu = torch.randn(3, 3, generator=gen(3))
    grid = noise_grid(images, mu, variances=(0.0, 0.5, 1.0), draws=2, generator=gen(4))
    assert grid.shape == (3 * 3 * 2, 1, 2, 2)
    rows = grid.reshape(3, 3, 2, 4)  # variance, point, draw, pixels
    clean = images(mu).reshape(3, 1, 4).expand(3, 2, 4)
    torch.testing.assert_close(rows[0], clean)
    # one eps for all variances: the offsets from the clean decoding grow by sqrt(variance) ratios
    torch.testing.assert_close(rows[2] - clean, (rows[1] - clean) * 2 ** 0.5)
    assert not torch.allclose(rows[1, :, 0], rows[1, :, 1])  # the draws differ
    again = noise_grid(images, mu, variances=(0.0, 0.5, 1.0), draws=2, generator=gen(4))
    assert torch.equal(grid, again)
    assert noise_grid(lambda z: z @ W.T, mu, (0.0, 1.0), generator=gen()) is None
    assert noise_grid(lambda z: (z @ W.T).reshape(-1, 4, 1, 1), mu, (0.0,), generator=gen()) is None
