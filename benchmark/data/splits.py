"""What a data loader takes and gives: a load request, train / test (and validation) splits as
tensors, and the seeded random streams that draw subsets and toy data.

Shapes: ``x`` [N, *shape] (e.g. [N, 1, 28, 28], [N, 2], or [N, T_max] token ids), ``y`` [N]
int64 labels. Image sets keep ``x`` as uint8 pixel values 0..255 (a quarter of the memory of
float32); :func:`to_unit` turns them into float32 in [0, 1] with the same bits on every device.
Text sets keep ``x`` as int64 token ids, which no conversion touches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .files import DataFiles

if TYPE_CHECKING:
    from .vocabulary import Vocabulary


@dataclass(frozen=True)
class DataSplit:
    """``x``: [N, *shape], float32, uint8 pixels (0..255) or int64 token ids [N, T_max] (text
    sets, see :mod:`.text`); ``y``: [N] int64 labels (class / mixture component / arm).

    Loaders and the per-process cache keep image splits as uint8; :meth:`as_float` gives float32
    in [0, 1] (see :func:`benchmark.data.catalog.load_dataset` for which splits it hands out as what).
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0] or self.y.ndim != 1:
            raise ValueError(f"x {tuple(self.x.shape)} and y {tuple(self.y.shape)} do not pair up")

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: str | torch.device) -> DataSplit:
        return DataSplit(self.x.to(device), self.y.to(device))

    def subset(self, n: int | None, generator: torch.Generator) -> DataSplit:
        """``n`` examples drawn without replacement (all of them, unchanged, if n is None or >= N)."""
        if n is None or n >= len(self):
            return self
        if n < 0:
            raise ValueError(f"subset size must be >= 0, got {n}")
        idx = torch.randperm(len(self), generator=generator)[:n].to(self.x.device)
        return DataSplit(self.x[idx], self.y[idx])

    @property
    def lengths(self) -> torch.Tensor | None:
        """Tokens per sentence [N] (``<s>`` and ``</s>`` included) of a text split (int64 token ids,
        padding 0); None for any other data."""
        return (self.x != 0).sum(1) if self.x.dtype == torch.int64 else None

    def split(self, fraction: float, generator: torch.Generator) -> tuple[DataSplit, DataSplit]:
        """(rest, held out): ``round(fraction * N)`` examples (at least 2) drawn without
        replacement are held out; both keep their examples' original order."""
        held = max(2, round(fraction * len(self)))
        if held >= len(self):
            raise ValueError(f"cannot hold out {held} of {len(self)} examples and train on the rest")
        mask = torch.zeros(len(self), dtype=torch.bool)
        mask[torch.randperm(len(self), generator=generator)[:held]] = True
        mask = mask.to(self.x.device)
        return DataSplit(self.x[~mask], self.y[~mask]), DataSplit(self.x[mask], self.y[mask])

    def as_float(self) -> DataSplit:
        """``x`` as float32 in [0, 1]: uint8 pixels v become v / 255 (other dtypes unchanged).

        The conversion looks v / 255 up in a table computed on the CPU, so it gives the same
        bits on every device, and works in chunks, so its peak memory is the float result.
        """
        if self.x.dtype != torch.uint8:
            return self
        out = torch.empty(self.x.shape, dtype=torch.float32, device=self.x.device)
        rows = max(1, _CONVERT_CHUNK // max(1, math.prod(self.x.shape[1:])))
        for start in range(0, len(self), rows):
            out[start:start + rows] = to_unit(self.x[start:start + rows])
        return DataSplit(out, self.y)


_BYTE_TO_UNIT = torch.arange(256, dtype=torch.float32) / 255
_BYTE_TO_UNIT_ON: dict[torch.device, torch.Tensor] = {}  # the table on each device it was used on
_CONVERT_CHUNK = 1 << 24  # elements converted at a time by DataSplit.as_float


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels v -> float32 v / 255 on ``x``'s device, the same bits on every device (a
    table computed on the CPU); any other dtype is returned unchanged."""
    if x.dtype != torch.uint8:
        return x
    table = _BYTE_TO_UNIT_ON.get(x.device)
    if table is None:
        table = _BYTE_TO_UNIT_ON[x.device] = _BYTE_TO_UNIT.to(x.device)
    return table[x.long()]



@dataclass(frozen=True)
class Dataset:
    """A named train/test pair (and a published validation split, where there is one); labels
    lie in ``range(num_classes)``."""

    name: str
    train: DataSplit
    test: DataSplit
    num_classes: int
    files: DataFiles | None = None  # which files the examples came from (records' `data`)
    valid: DataSplit | None = None  # the published validation split (text sets), else None
    vocabulary: Vocabulary | None = None  # the token ids of a text set's x, else None

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-example shape, e.g. (1, 28, 28) or (2,); for a text set its
        :class:`~.text.SequenceShape` (T_max, vocabulary size)."""
        if self.vocabulary is not None:
            return self.vocabulary.sequence_shape(self.train.x.shape[1])
        return tuple(self.train.x.shape[1:])

    def to(self, device: str | torch.device) -> Dataset:
        valid = self.valid.to(device) if self.valid is not None else None
        return dataclasses.replace(self, train=self.train.to(device), test=self.test.to(device), valid=valid)


@dataclass(frozen=True)
class LoadRequest:
    """Where and how a loader finds its data (image sets) or generates it (toy sets)."""

    data_root: Path | None  # user-supplied root (--data-root), may be None
    seed: int  # for generated toy data
    download: bool = False  # let torchvision fetch image data that is not found locally



def stream_generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for one named random stream of ``seed``, independent of the other streams."""
    digest = hashlib.sha256(f"{seed}/{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)
