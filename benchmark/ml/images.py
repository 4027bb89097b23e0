"""Image grids for run records: a deterministic PNG writer and the noise-sensitivity grid.

Images are tensors [N, C, H, W] with C in {1, 3} and values in [0, 1]. PNGs are written with
matplotlib (no torchvision needed) and carry no metadata, so equal inputs give equal bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.image
import numpy as np
import torch
from torch import Tensor


def image_grid(images: Tensor, nrow: int, padding: int = 2, pad_value: float = 0.5) -> Tensor:
    """Tile ``images`` [N, C, H, W] into one image [C, rows*(H+p)+p, nrow*(W+p)+p].

    ``nrow`` images per grid row (torchvision's convention), ``rows = ceil(N / nrow)``,
    filled row by row; ``padding`` pixels of ``pad_value`` around and between tiles (also
    where the last row is short). Values are clamped to [0, 1].
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape [N, C in (1, 3), H, W], got {tuple(images.shape)}")
    if nrow < 1 or images.shape[0] < 1:
        raise ValueError(f"need nrow >= 1 and at least one image, got nrow={nrow}, N={images.shape[0]}")
    n, c, h, w = images.shape
    rows, p = math.ceil(n / nrow), padding
    grid = torch.full((c, rows * (h + p) + p, nrow * (w + p) + p), float(pad_value))
    images = images.detach().float().cpu().clamp(0, 1)
    for i in range(n):
        top, left = p + (i // nrow) * (h + p), p + (i % nrow) * (w + p)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid


def save_image_grid(images: Tensor, path: Path, nrow: int, padding: int = 2,
                    pad_value: float = 0.5) -> Path:
    """Write ``images`` [N, C, H, W] (C in {1, 3}, clamped to [0, 1]) as a PNG grid; see
    :func:`image_grid` for the layout. Pixels are quantised to 8 bits (round(255 x)) and
    stored as RGBA; no metadata (no software tag, no time), so the bytes depend only on the
    input. Creates the parent folder; returns ``path``."""
    grid = image_grid(images, nrow, padding, pad_value)
    pixels = (grid * 255).round().to(torch.uint8).expand(3, -1, -1)  # grey -> RGB; RGB unchanged
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(path, np.ascontiguousarray(pixels.permute(1, 2, 0).numpy()),
                            format="png", metadata={"Software": None})
    return path


def noise_grid(decode_mean: Callable[[Tensor], Tensor], mu: Tensor, variances: Sequence[float],
               draws: int = 1, generator: torch.Generator | None = None) -> Tensor | None:
    """Decoded means of ``mu + sqrt(variance) * eps`` laid out for :func:`save_image_grid`.

    ``mu`` [M, d]: a few posterior means. One eps [M, draws, d] ~ N(0, I) from ``generator``
    is shared by all variances, so down a column the same noise direction grows. Returns
    [len(variances) * M * draws, C, H, W], ordered variance-major, then point, then draw:
    save it with ``nrow = M * draws`` for one grid row per variance (the first row is the
    noiseless decoding when variances start at 0). Values are the decoder's, unclamped.
    Returns None (nothing to draw) when the decoder output per point is not an image
    [C, H, W] with C in {1, 3}. Decodes under ``torch.no_grad()``.
    """
    mu = mu.detach()
    m, d = mu.shape
    eps = torch.randn((m, draws, d), generator=generator, dtype=mu.dtype, device=mu.device)
    rows = []
    with torch.no_grad():
        for variance in variances:
            z = (mu[:, None] + math.sqrt(variance) * eps).reshape(m * draws, d)
            out = decode_mean(z)
            if out.dim() != 4 or out.shape[1] not in (1, 3):
                return None
            rows.append(out)
    return torch.cat(rows)


def is_image_shape(shape: Sequence[int]) -> bool:
    """True for a per-example shape [C, H, W] with C in {1, 3} (grey or RGB images)."""
    return len(shape) == 3 and shape[0] in (1, 3)
