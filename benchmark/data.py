"""Data sets: a registry of loaders that return whole splits as in-memory float32 tensors.

Image sets are read from IDX files on disk (never downloaded unless asked); 2-D toy sets are
generated from the seed. :func:`load_dataset` caches the full splits per process and hands out
deterministic random subsets on the requested device.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .errors import DataError
from .registry import Registry

DATA_ENV = "BENCHMARK_DATA"
# Roots holding one folder per data set, as Debian's dataset-* packages install them.
SYSTEM_DATA_ROOTS: list[Path] = [Path("/usr/share/datasets")]
# Searched last, and where ``download=True`` puts files when no data root is given.
CACHE_ROOT: Path = Path.home() / ".cache" / "benchmark" / "data"
TOY_TRAIN_SIZE, TOY_TEST_SIZE = 10_000, 2_000


@dataclass(frozen=True)
class DataSplit:
    """``x``: [N, *shape] float32; ``y``: [N] int64 labels (class / mixture component / arm)."""

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


@dataclass(frozen=True)
class Dataset:
    """A named train/test pair; labels lie in ``range(num_classes)``."""

    name: str
    train: DataSplit
    test: DataSplit
    num_classes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-example shape, e.g. (1, 28, 28) or (2,)."""
        return tuple(self.train.x.shape[1:])

    def to(self, device: str | torch.device) -> Dataset:
        return dataclasses.replace(self, train=self.train.to(device), test=self.test.to(device))


@dataclass(frozen=True)
class LoadRequest:
    data_root: Path | None  # user-supplied root (--data-root), may be None
    seed: int  # for generated toy data
    download: bool = False  # let torchvision fetch image data that is not found locally


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str  # one line, shown by `python -m benchmark list datasets`
    kind: str  # "image" or "toy"
    load: Callable[[LoadRequest], Dataset]  # full splits, on CPU

    def __post_init__(self) -> None:
        if self.kind not in ("image", "toy"):
            raise ValueError(f"dataset {self.name!r}: kind must be 'image' or 'toy', got {self.kind!r}")


DATASETS: Registry[DatasetSpec] = Registry("dataset")
_CACHE: dict[tuple[object, ...], Dataset] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.add(spec.name, spec)


def load_dataset(
    name: str,
    *,
    data_root: str | Path | None = None,
    seed: int = 0,
    train_size: int | None = None,
    test_size: int | None = None,
    device: str | torch.device = "cpu",
    download: bool = False,
) -> Dataset:
    """Data set ``name`` with random subsets of ``train_size`` / ``test_size`` examples (None: all).

    The full splits are loaded once per process; the subsets depend only on ``seed``. The
    returned tensors may be shared with the cache: do not modify them in place.
    """
    spec = DATASETS[name]
    for label, size in (("train_size", train_size), ("test_size", test_size)):
        if size is not None and size < 1:
            raise DataError(f"{label} must be a positive number of examples, got {size}")
    root = Path(data_root).expanduser().resolve() if data_root is not None else None
    # Toy data depend on the seed only; image files on where they are looked for.
    key = (name, seed) if spec.kind == "toy" else (name, root, os.environ.get(DATA_ENV))
    if key not in _CACHE:
        _CACHE[key] = spec.load(LoadRequest(root, seed, download))
    full = _CACHE[key]
    train = full.train.subset(train_size, _generator(seed, "train-subset"))
    test = full.test.subset(test_size, _generator(seed, "test-subset"))
    return dataclasses.replace(full, train=train, test=test).to(device)


def check_available(name: str, *, data_root: str | Path | None = None, download: bool = False) -> None:
    """Raise :class:`DataError` (or UnknownNameError) now if data set ``name`` cannot be loaded.

    Loads it into this process's cache, so a following :func:`load_dataset` is free.
    """
    load_dataset(name, data_root=data_root, download=download)


def _generator(seed: int, stream: str) -> torch.Generator:
    """A generator for one named random stream of ``seed``, independent of the other streams."""
    digest = hashlib.sha256(f"{seed}/{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)


# ---------------------------------------------------------------------------------------------
# IDX files

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path) -> torch.Tensor:
    """The array in an IDX file (gzipped if the name ends in ``.gz``), in its stored dtype.

    Raises :class:`DataError` naming the file for anything unreadable or malformed.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read IDX file: {e}") from e
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: unreadable gzip file ({e}); re-download it or unzip it") from e
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file: expected a 4-byte magic number, found {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] or raw[1]:
        hint = " (it looks gzipped: name it *.gz)" if raw[:2] == b"\x1f\x8b" else ""
        raise DataError(
            f"{path}: not an IDX file: magic number 0x{magic:08X}, expected 0x0000TTDD "
            f"(two zero bytes, type code TT, DD dimensions; e.g. 0x00000803 for images){hint}"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        valid = ", ".join(f"0x{c:02X}" for c in _IDX_TYPES)
        raise DataError(f"{path}: unknown IDX type code 0x{code:02X} (magic 0x{magic:08X}); expected one of {valid}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path}: truncated IDX file: expected {4 * ndim} bytes of dimension sizes, found {len(raw) - 4}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[code]
    expected, found = math.prod(dims) * dtype.itemsize, len(raw) - header
    if found < expected:
        raise DataError(
            f"{path}: truncated IDX file: expected {expected} bytes of data for shape {dims}, found {found}"
        )
    if found > expected:
        raise DataError(
            f"{path}: trailing garbage in IDX file: expected {expected} bytes of data for shape {dims}, "
            f"found {found} ({found - expected} extra)"
        )
    array = np.frombuffer(raw, dtype, count=math.prod(dims), offset=header).reshape(dims)
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")))


_IDX_STEMS = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_ALL_STEMS = [stem for stems in _IDX_STEMS.values() for stem in stems]


def _idx_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem``, else ``directory/stem.gz``, else None."""
    return next((p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()), None)


def _search_dirs(data_root: Path | None, torchvision_name: str, folder: str) -> list[Path]:
    """Where to look, in order: data root, $BENCHMARK_DATA, system roots, cache."""

    def layouts(root: Path) -> list[Path]:
        return [root, root / torchvision_name / "raw", root / folder]

    env = os.environ.get(DATA_ENV)
    dirs = layouts(data_root) if data_root else []
    dirs += layouts(Path(env).expanduser()) if env else []
    dirs += [root / folder for root in SYSTEM_DATA_ROOTS]
    dirs += layouts(CACHE_ROOT)
    return list(dict.fromkeys(dirs))


def _describe_missing(directory: Path) -> str:
    if not directory.is_dir():
        return "no such directory"
    missing = [s for s in _ALL_STEMS if _idx_file(directory, s) is None]
    return "missing " + ", ".join(missing)


def _download(request: LoadRequest, name: str, torchvision_name: str) -> Path:
    """Fetch with ``torchvision.datasets.<torchvision_name>``; returns the folder of IDX files."""
    root = request.data_root or CACHE_ROOT
    try:
        import torchvision
    except ImportError as e:
        raise DataError(f"--download needs torchvision ({e}); install it or get the {name} files yourself") from e
    try:
        getattr(torchvision.datasets, torchvision_name)(root=str(root), download=True)
    except Exception as e:  # network and archive errors come in many types
        raise DataError(f"downloading {name} with torchvision into {root} failed: {e}") from e
    return root / torchvision_name / "raw"


def load_idx_dataset(
    request: LoadRequest, *, name: str, torchvision_name: str, folder: str, num_classes: int, apt_package: str | None
) -> Dataset:
    """An MNIST-style image set from the four IDX files; x in [0, 1], shape [N, 1, 28, 28].

    ``torchvision_name`` is both torchvision's class and folder name (``ROOT/<name>/raw``);
    ``folder`` the plain folder name (``ROOT/<folder>``, also under :data:`SYSTEM_DATA_ROOTS`).
    """
    dirs = _search_dirs(request.data_root, torchvision_name, folder)
    found = next((d for d in dirs if all(_idx_file(d, s) for s in _ALL_STEMS)), None)
    if found is None and request.download:
        found = _download(request, name, torchvision_name)
    if found is None:
        looked = "\n".join(f"  {d} ({_describe_missing(d)})" for d in dirs)
        apt = f"  - Debian/Ubuntu: apt-get install {apt_package}\n" if apt_package else ""
        raise DataError(
            f"{name} data not found; looked for {', '.join(_ALL_STEMS)} (each plain or .gz) in:\n{looked}\n"
            f"To get them:\n{apt}"
            f"  - pass --data-root DIR or set {DATA_ENV}=DIR, DIR holding the four files "
            f"(or torchvision's {torchvision_name}/raw layout)\n"
            f"  - pass --download to let torchvision fetch them into DIR (default {CACHE_ROOT})"
        )
    splits = {}
    for split, (image_stem, label_stem) in _IDX_STEMS.items():
        image_path, label_path = _idx_file(found, image_stem), _idx_file(found, label_stem)
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.dtype != torch.uint8 or images.shape[1:] != (28, 28):
            raise DataError(
                f"{image_path}: expected uint8 images of shape [N, 28, 28], "
                f"found {images.dtype} {tuple(images.shape)}"
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{label_path}: expected {images.shape[0]} labels to match {image_path.name}, "
                f"found shape {tuple(labels.shape)}"
            )
        labels = labels.long()
        if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < num_classes):
            raise DataError(f"{label_path}: labels must lie in 0..{num_classes - 1}")
        splits[split] = DataSplit(images.unsqueeze(1).float() / 255, labels)
    return Dataset(name, splits["train"], splits["test"], num_classes)


register_dataset(
    DatasetSpec(
        "fashion-mnist",
        "Fashion-MNIST: 28x28 grey clothing images, 10 classes, 60000 train / 10000 test",
        "image",
        lambda request: load_idx_dataset(
            request,
            name="fashion-mnist",
            torchvision_name="FashionMNIST",
            folder="fashion-mnist",
            num_classes=10,
            apt_package="dataset-fashion-mnist",
        ),
    )
)


# ---------------------------------------------------------------------------------------------
# 2-D toy sets: sample(n, generator) -> (x [n, 2] float32, y [n] int64)

Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def _pinwheel(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
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


def _chessboard(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform on the 8 dark cells ((i + j) even) of a 4x4 board on [-2, 2]^2; y = cell index."""
    y = torch.randint(len(CHESSBOARD_CELLS), (n,), generator=g)
    corner = torch.tensor(CHESSBOARD_CELLS, dtype=torch.float32)[y] - 2
    return corner + torch.rand(n, 2, generator=g), y


GMM_WEIGHTS = [0.49, 0.49] + [0.02 / 6] * 6


def _gaussian_mixture(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """8 Gaussians (std 0.15) centred on a circle of radius 2; components 0 and 1 hold 98% of the mass."""
    y = torch.multinomial(torch.tensor(GMM_WEIGHTS), n, replacement=True, generator=g)
    angle = 2 * math.pi * y / len(GMM_WEIGHTS)
    centre = 2 * torch.stack([angle.cos(), angle.sin()], 1)
    return centre + 0.15 * torch.randn(n, 2, generator=g), y


def _register_toy(name: str, description: str, sample: Sampler, num_classes: int) -> None:
    def load(request: LoadRequest) -> Dataset:
        train, test = (
            DataSplit(*sample(size, _generator(request.seed, f"{name}/{split}")))
            for split, size in (("train", TOY_TRAIN_SIZE), ("test", TOY_TEST_SIZE))
        )
        return Dataset(name, train, test, num_classes)

    register_dataset(DatasetSpec(name, description, "toy", load))


_register_toy("pinwheel", "2-D pinwheel with 5 spiralling arms (Johnson et al. 2016); y = arm", _pinwheel, 5)
_register_toy("chessboard", "2-D uniform on the 8 dark cells of a 4x4 board on [-2, 2]^2; y = cell", _chessboard, 8)
_register_toy(
    "gaussian-mixture",
    "2-D mixture of 8 Gaussians on a circle, two holding 98% of the mass; y = component",
    _gaussian_mixture,
    8,
)
