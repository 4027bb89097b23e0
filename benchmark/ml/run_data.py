"""The training examples of the K >= 1 runs a trainer trains, on the training device, and how a
step's batches are gathered from them."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


class RunData:
    """The training examples of K runs on the training device, each distinct tensor of ``xs``
    (run k's [N, *shape]; runs of a pack may share one, by identity) held once:
    :meth:`batch` gathers run k's examples ``index[k]`` for every k."""

    def __init__(self, xs: Sequence[Tensor]):
        distinct: list[Tensor] = []
        self.rows: list[int] = []  # run k's tensor: distinct[rows[k]]
        for x in xs:
            row = next((i for i, seen in enumerate(distinct) if seen is x), len(distinct))
            distinct += [x] if row == len(distinct) else []
            self.rows.append(row)
        self.xs = list(xs)
        self.device = distinct[0].device
        # one tensor [N, *shape], indexed by [K, B] rows; else [D, N, *shape], indexed by (tensor, row)
        self.x = distinct[0] if len(distinct) == 1 else torch.stack(distinct)
        self.which = None if len(distinct) == 1 else torch.tensor(self.rows, device=self.device).unsqueeze(1)

    def run(self, k: int) -> Tensor:
        """Run k's examples [N, *shape]."""
        return self.xs[k]

    def batch(self, index: Tensor) -> Tensor:
        """Run k's examples ``index[k]`` for each k: [K, B, *shape] from ``index`` [K, B] (on the device)."""
        return self.x[index] if self.which is None else self.x[self.which, index]
