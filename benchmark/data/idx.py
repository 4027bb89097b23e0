"""IDX files (MNIST, Fashion-MNIST): the reader and the loader of the four files of a data set.

The files are looked for plain or gzipped, in ROOT itself, torchvision's ``ROOT/<Name>/raw`` and
``ROOT/<folder>`` under each root of :mod:`benchmark.data.roots`; ``--download`` lets torchvision
fetch them. Anything missing or malformed raises :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import roots
from .files import source_files
from .splits import Dataset, DataSplit, LoadRequest

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
    """Where to look for IDX files, in order: data root, $BENCHMARK_DATA, system roots, cache."""
    return roots.candidate_dirs(data_root, ["", f"{torchvision_name}/raw", folder], [folder])


def _describe_missing(directory: Path) -> str:
    if not directory.is_dir():
        return "no such directory"
    missing = [s for s in _ALL_STEMS if _idx_file(directory, s) is None]
    return "missing " + ", ".join(missing)


def load_idx_dataset(
    request: LoadRequest, *, name: str, torchvision_name: str, folder: str, num_classes: int, apt_package: str | None
) -> Dataset:
    """An MNIST-style image set from the four IDX files: x uint8 pixels [N, 1, 28, 28], y [N] int64.

    ``torchvision_name`` is both torchvision's class and folder name (``ROOT/<name>/raw``);
    ``folder`` the plain folder name (``ROOT/<folder>``, also under :data:`benchmark.data.roots.SYSTEM_DATA_ROOTS`).
    """
    dirs = _search_dirs(request.data_root, torchvision_name, folder)
    found = next((d for d in dirs if all(_idx_file(d, s) for s in _ALL_STEMS)), None)
    if found is None and request.download:
        root = roots.torchvision_fetch(request, name, lambda datasets, root: getattr(datasets, torchvision_name)(
            root=root, download=True))
        found = root / torchvision_name / "raw"
    if found is None:
        looked = "\n".join(f"  {d} ({_describe_missing(d)})" for d in dirs)
        apt = f"  - Debian/Ubuntu: apt-get install {apt_package}\n" if apt_package else ""
        raise DataError(
            f"{name} data not found; looked for {', '.join(_ALL_STEMS)} (each plain or .gz) in:\n{looked}\n"
            f"To get them:\n{apt}"
            f"  - pass --data-root DIR or set {roots.DATA_ENV}=DIR, DIR holding the four files "
            f"(or torchvision's {torchvision_name}/raw layout)\n"
            f"  - pass --download to let torchvision fetch them into DIR (default {roots.CACHE_ROOT})"
        )
    splits, paths = {}, []
    for split, (image_stem, label_stem) in _IDX_STEMS.items():
        image_path, label_path = _idx_file(found, image_stem), _idx_file(found, label_stem)
        paths += [image_path, label_path]
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
        splits[split] = DataSplit(images.unsqueeze(1).contiguous(), labels)  # uint8; float on load
    return Dataset(name, splits["train"], splits["test"], num_classes, source_files(paths))

