"""The catalogue of data sets: every registered set with its loader, shape and published sizes,
and :func:`load_dataset`, which hands out (subsets of) their splits.

Image sets are read from files (never downloaded unless asked), toy sets generated from the
seed, text sets read from files or a Python package (:mod:`.text`); docs/datasets.md says where
each comes from and how it is preprocessed. The full splits are loaded once per process and kept
as stored (image pixels as uint8, token ids as int64).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import DataError
from ..registry import Registry
from . import roots
from .celeba import load_celeba
from .ffhq import load_ffhq
from .idx import load_idx_dataset
from .omniglot import load_omniglot
from .splits import Dataset, LoadRequest, stream_generator
from .text import load_ptb, load_yahoo, load_yelp
from .vocabulary import SequenceShape
from .toys import TOY_TEST_SIZE, TOY_TRAIN_SIZE, chessboard, gaussian_mixture, load_toy, pinwheel

KINDS = ("image", "toy", "sequence")  # what a data set's x holds: pixels, 2-D points, token ids


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data set: how to load its full splits and what they hold."""

    name: str
    description: str  # one line, shown by `python -m benchmark list datasets`
    kind: str  # one of KINDS: "image", "toy" or "sequence" (token ids)
    load: Callable[[LoadRequest], Dataset]  # full splits, on CPU (x float32, uint8 pixels or int64 token ids)
    shape: tuple[int, ...] | None = None  # per-example shape of x, e.g. (1, 28, 28); a text set: its SequenceShape
    train_size: int | None = None  # examples in the published training split (None: unknown)
    test_size: int | None = None  # examples in the published test split (None: unknown)
    valid_size: int | None = None  # examples in the published validation split (None: none or unknown)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name!r}: kind must be one of {', '.join(map(repr, KINDS))}, "
                             f"got {self.kind!r}")


DATASETS: Registry[DatasetSpec] = Registry("dataset")
_CACHE: dict[tuple[object, ...], Dataset] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.add(spec.name, spec)


def _idx(name: str, torchvision_name: str, apt_package: str | None) -> Callable[[LoadRequest], Dataset]:
    return functools.partial(load_idx_dataset, name=name, torchvision_name=torchvision_name, folder=name,
                             num_classes=10, apt_package=apt_package)


# One registration per statement: a run's code key includes only the one its data set names
# (benchmark/planning/code_key.py), so a change to one loader leaves the other data sets' records alone.
register_dataset(DatasetSpec(
    "fashion-mnist", "Fashion-MNIST: 28x28 grey clothing images, 10 classes, 60000 train / 10000 test",
    "image", _idx("fashion-mnist", "FashionMNIST", "dataset-fashion-mnist"), shape=(1, 28, 28), train_size=60_000,
    test_size=10_000))
register_dataset(DatasetSpec(
    "mnist", "MNIST: 28x28 grey handwritten digits, 10 classes, 60000 train / 10000 test",
    "image", _idx("mnist", "MNIST", None), shape=(1, 28, 28), train_size=60_000, test_size=10_000))
register_dataset(DatasetSpec(
    "omniglot", "Omniglot: 105x105 characters resized to 28x28 grey (ink 1), background set 19280 train / "
    "evaluation set 13180 test; y = character (1623)",
    "image", functools.partial(load_omniglot, name="omniglot", binary=False), shape=(1, 28, 28),
    train_size=19_280, test_size=13_180))
register_dataset(DatasetSpec(
    "omniglot-binary", "Omniglot as `omniglot`, binarised with a fixed threshold at 0.5",
    "image", functools.partial(load_omniglot, name="omniglot-binary", binary=True), shape=(1, 28, 28),
    train_size=19_280, test_size=13_180))
register_dataset(DatasetSpec(
    "celeba", "CelebA aligned faces, center crop 148, 64x64 RGB; partition 0 train (162770) / 2 test (19962); "
    "y = Male", "image", load_celeba, shape=(3, 64, 64), train_size=162_770, test_size=19_962))
register_dataset(DatasetSpec(
    "ffhq", "FFHQ faces (any release, e.g. the 128x128 thumbnails) resized to 64x64 RGB; sorted files, first 60000 "
    "train / last 10000 test; y = 0", "image", load_ffhq, shape=(3, 64, 64), train_size=60_000, test_size=10_000))
register_dataset(DatasetSpec(
    "pinwheel", "2-D pinwheel with 5 spiralling arms (Johnson et al. 2016); y = arm", "toy",
    functools.partial(load_toy, "pinwheel", pinwheel, 5), shape=(2,), train_size=TOY_TRAIN_SIZE,
    test_size=TOY_TEST_SIZE))
register_dataset(DatasetSpec(
    "chessboard", "2-D uniform on the 8 dark cells of a 4x4 board on [-2, 2]^2; y = cell", "toy",
    functools.partial(load_toy, "chessboard", chessboard, 8), shape=(2,), train_size=TOY_TRAIN_SIZE,
    test_size=TOY_TEST_SIZE))
register_dataset(DatasetSpec(
    "gaussian-mixture", "2-D mixture of 8 Gaussians on a circle, two holding 98% of the mass; y = component", "toy",
    functools.partial(load_toy, "gaussian-mixture", gaussian_mixture, 8), shape=(2,), train_size=TOY_TRAIN_SIZE,
    test_size=TOY_TEST_SIZE))
register_dataset(DatasetSpec(
    "ptb", "Penn Treebank, Mikolov's split: 42068 train / 3370 valid / 3761 test sentences, 10k words with <unk>; "
    "x = token ids <s> ... </s> padded to 84; y = 0", "sequence", load_ptb, shape=SequenceShape(84, 10_002),
    train_size=42_068, test_size=3_761, valid_size=3_370))
register_dataset(DatasetSpec(
    "yahoo", "Yahoo Answers documents (Yang et al. 2017, lagging-encoder release): 100000 train / 10000 valid / "
    "10000 test, 20k words with <unk>; x = token ids; y = 0", "sequence", load_yahoo,
    train_size=100_000, test_size=10_000, valid_size=10_000))
register_dataset(DatasetSpec(
    "yelp", "Yelp reviews (Yang et al. 2017, lagging-encoder release): 100000 train / 10000 valid / 10000 test, "
    "20k words with <unk>; x = token ids; y = rating (5 classes)", "sequence", load_yelp,
    train_size=100_000, test_size=10_000, valid_size=10_000))


def load_dataset(
    name: str,
    *,
    data_root: str | Path | None = None,
    seed: int = 0,
    train_size: int | None = None,
    test_size: int | None = None,
    device: str | torch.device = "cpu",
    download: bool = False,
    float_train: bool = True,
    valid_fraction: float = 0.0,
) -> Dataset:
    """Data set ``name`` with random subsets of ``train_size`` / ``test_size`` examples (None: all).

    The full splits are loaded once per process; the subsets depend only on ``seed``. The
    returned tensors may be shared with the cache: do not modify them in place. ``x`` is
    float32 in [0, 1], except the training split of an image set with ``float_train=False``:
    uint8 pixels, a quarter of the memory, for a training loop that converts each batch with
    :func:`benchmark.data.splits.to_unit` (the same values as the float split), and text sets,
    whose ``x`` is int64 token ids [N, T_max] (see :mod:`.text`). A published validation split
    (``valid``, text sets) is handed out whole, on ``device``; for a set without one,
    ``valid_fraction`` > 0 holds that fraction of the training subset out as ``valid`` (drawn from
    the seed: every run of a seed asking for it holds out the same examples) and leaves the rest
    as ``train``.
    """
    for label, size in (("train_size", train_size), ("test_size", test_size)):
        if size is not None and size < 1:
            raise DataError(f"{label} must be a positive number of examples, got {size}")
    if not 0 <= valid_fraction < 1:
        raise DataError(f"valid_fraction must lie in [0, 1), got {valid_fraction}")
    full = full_splits(name, data_root, seed, download)
    # Subsets are drawn in the stored dtype, moved, and only then converted to float32: the
    # cache stays uint8 and a GPU run copies a quarter of the bytes.
    train = full.train.subset(train_size, stream_generator(seed, "train-subset"))
    valid = full.valid
    if valid_fraction and valid is None:
        train, valid = train.split(valid_fraction, stream_generator(seed, "valid-subset"))
    train = train.to(device)
    train = train.as_float() if float_train else train
    test = full.test.subset(test_size, stream_generator(seed, "test-subset")).to(device).as_float()
    valid = valid.to(device).as_float() if valid is not None else None
    return dataclasses.replace(full, train=train, test=test, valid=valid)


def full_splits(name: str, data_root: str | Path | None = None, seed: int = 0, download: bool = False) -> Dataset:
    """The full splits of ``name`` in their stored dtype (on the CPU), from this process's cache
    if there. Do not modify them in place."""
    spec = DATASETS[name]
    root = Path(data_root).expanduser().resolve() if data_root is not None else None
    # Toy data depend on the seed only; image and text files on where they are looked for.
    key = (name, seed) if spec.kind == "toy" else (name, root, os.environ.get(roots.DATA_ENV))
    if key not in _CACHE:
        _CACHE[key] = spec.load(LoadRequest(root, seed, download))
    return _CACHE[key]


def check_available(name: str, *, data_root: str | Path | None = None, download: bool = False) -> None:
    """Raise :class:`DataError` (or UnknownNameError) now if data set ``name`` cannot be loaded.

    Loads it into this process's cache (as stored, without the float copy), so a following
    :func:`load_dataset` does not read the files again.
    """
    full_splits(name, data_root, 0, download)


def published_sizes(name: str) -> tuple[int | None, int | None]:
    """(train, test) examples of the published splits of data set ``name`` (None: unknown)."""
    spec = DATASETS[name]
    return spec.train_size, spec.test_size
