"""2-D toy sets generated from the seed (no files): pinwheel, chessboard and a Gaussian mixture.

A sampler draws ``(x [n, 2] float32, y [n] int64)`` from a CPU generator; :func:`load_toy` makes
the train / test splits (:data:`TOY_TRAIN_SIZE` / :data:`TOY_TEST_SIZE` examples), each from its
own random stream of the run's data seed.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .files import DataFiles
from .splits import Dataset, DataSplit, LoadRequest, stream_generator

TOY_TRAIN_SIZE, TOY_TEST_SIZE = 10_000, 2_000
Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def pinwheel(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Johnson et al. (2016): 5 arms; radius ~ N(1, 0.3), tangent ~ N(0, 0.05), twist 0.25 e^r."""
    arms, rate = 5, 0.25
    y = torch.randint(arms, (n,), generator=g)
    radial = 1 + 0.3 * torch.randn(n, generator=g)
    tangential = 0.05 * torch.randn(n, generator=g)
    angle = 2 * math.pi * y / arms + rate * radial.exp()
    x = torch.stack(
        [radial * angle.cos() - tangential * angle.sin(), radial * angle.sin() + tangential * angle.cos()], 1
    )
    return x, y


CHESSBOARD_CELLS = [(i, j) for j in range(4) for i in range(4) if (i + j) % 2 == 0]  # (column, row)


def chessboard(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform on the 8 dark cells ((i + j) even) of a 4x4 board on [-2, 2]^2; y = cell index."""
    y = torch.randint(len(CHESSBOARD_CELLS), (n,), generator=g)
    corner = torch.tensor(CHESSBOARD_CELLS, dtype=torch.float32)[y] - 2
    return corner + torch.rand(n, 2, generator=g), y


GMM_WEIGHTS = [0.49, 0.49] + [0.02 / 6] * 6


def gaussian_mixture(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """8 Gaussians (std 0.15) centred on a circle of radius 2; components 0 and 1 hold 98% of the mass."""
    y = torch.multinomial(torch.tensor(GMM_WEIGHTS), n, replacement=True, generator=g)
    angle = 2 * math.pi * y / len(GMM_WEIGHTS)
    centre = 2 * torch.stack([angle.cos(), angle.sin()], 1)
    return centre + 0.15 * torch.randn(n, 2, generator=g), y


def load_toy(name: str, sample: Sampler, num_classes: int, request: LoadRequest) -> Dataset:
    """Data set ``name``: train and test splits drawn by ``sample`` from the seed of ``request``."""
    train, test = (
        DataSplit(*sample(size, stream_generator(request.seed, f"{name}/{split}")))
        for split, size in (("train", TOY_TRAIN_SIZE), ("test", TOY_TEST_SIZE))
    )
    return Dataset(name, train, test, num_classes, DataFiles("generated"))
