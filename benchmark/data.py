"""Data sets: a registry of loaders that return whole splits as in-memory tensors.

Image sets are read from files on disk (never downloaded unless asked): MNIST and
Fashion-MNIST from IDX files, Omniglot, CelebA and FFHQ from image folders (preprocessed once
into a uint8 tensor file cached next to the data); 2-D toy sets are generated from the seed.
:func:`load_dataset` caches the full splits per process (images as uint8, 1 byte per pixel)
and hands out deterministic random subsets as float32 in [0, 1] on the requested device.
See docs/datasets.md for where each set comes from and how it is preprocessed.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import os
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

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
    """``x``: [N, *shape] float32; ``y``: [N] int64 labels (class / mixture component / arm).

    Inside the per-process cache, image splits keep ``x`` as uint8 pixel values 0..255 (a
    quarter of the memory); :func:`load_dataset` always hands out float32 (:meth:`as_float`).
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
    load: Callable[[LoadRequest], Dataset]  # full splits, on CPU (x float32, or uint8 pixels)
    shape: tuple[int, ...] | None = None  # per-example shape of x, e.g. (1, 28, 28)
    train_size: int | None = None  # examples in the published training split (None: unknown)
    test_size: int | None = None  # examples in the published test split (None: unknown)

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
    float_train: bool = True,
) -> Dataset:
    """Data set ``name`` with random subsets of ``train_size`` / ``test_size`` examples (None: all).

    The full splits are loaded once per process; the subsets depend only on ``seed``. The
    returned tensors may be shared with the cache: do not modify them in place. ``x`` is
    float32, except the training split of an image set with ``float_train=False``: uint8
    pixels, a quarter of the memory, for a training loop that converts each batch with
    :func:`to_unit` (the same values as the float split).
    """
    for label, size in (("train_size", train_size), ("test_size", test_size)):
        if size is not None and size < 1:
            raise DataError(f"{label} must be a positive number of examples, got {size}")
    full = _load_full(name, data_root, seed, download)
    # Subsets are drawn in the stored dtype, moved, and only then converted to float32: the
    # cache stays uint8 and a GPU run copies a quarter of the bytes.
    train = full.train.subset(train_size, _generator(seed, "train-subset")).to(device)
    train = train.as_float() if float_train else train
    test = full.test.subset(test_size, _generator(seed, "test-subset")).to(device).as_float()
    return dataclasses.replace(full, train=train, test=test)


def _load_full(name: str, data_root: str | Path | None, seed: int, download: bool) -> Dataset:
    """The full splits of ``name`` in their stored dtype, from this process's cache if there."""
    spec = DATASETS[name]
    root = Path(data_root).expanduser().resolve() if data_root is not None else None
    # Toy data depend on the seed only; image files on where they are looked for.
    key = (name, seed) if spec.kind == "toy" else (name, root, os.environ.get(DATA_ENV))
    if key not in _CACHE:
        _CACHE[key] = spec.load(LoadRequest(root, seed, download))
    return _CACHE[key]


def check_available(name: str, *, data_root: str | Path | None = None, download: bool = False) -> None:
    """Raise :class:`DataError` (or UnknownNameError) now if data set ``name`` cannot be loaded.

    Loads it into this process's cache (as stored, without the float copy), so a following
    :func:`load_dataset` does not read the files again.
    """
    _load_full(name, data_root, 0, download)


def published_sizes(name: str) -> tuple[int | None, int | None]:
    """(train, test) examples of the published splits of data set ``name`` (None: unknown)."""
    spec = DATASETS[name]
    return spec.train_size, spec.test_size


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
    """Where to look for IDX files, in order: data root, $BENCHMARK_DATA, system roots, cache."""
    return _candidate_dirs(data_root, ["", f"{torchvision_name}/raw", folder], [folder])


def _candidate_dirs(data_root: Path | None, layouts: list[str], system_layouts: list[str]) -> list[Path]:
    """``ROOT/<layout>`` for each layout ("" is ROOT itself) under the data root, then
    $BENCHMARK_DATA, then ``SYSTEM/<system layout>`` under each system root, then the cache."""

    def under(root: Path, subpaths: list[str]) -> list[Path]:
        return [root / sub if sub else root for sub in subpaths]

    env = os.environ.get(DATA_ENV)
    dirs = under(data_root, layouts) if data_root else []
    dirs += under(Path(env).expanduser(), layouts) if env else []
    dirs += [d for root in SYSTEM_DATA_ROOTS for d in under(root, system_layouts)]
    dirs += under(CACHE_ROOT, layouts)
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
        splits[split] = DataSplit(images.unsqueeze(1).contiguous(), labels)  # uint8; float on load
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
        shape=(1, 28, 28),
        train_size=60_000,
        test_size=10_000,
    )
)

register_dataset(
    DatasetSpec(
        "mnist",
        "MNIST: 28x28 grey handwritten digits, 10 classes, 60000 train / 10000 test",
        "image",
        lambda request: load_idx_dataset(
            request, name="mnist", torchvision_name="MNIST", folder="mnist", num_classes=10, apt_package=None
        ),
        shape=(1, 28, 28),
        train_size=60_000,
        test_size=10_000,
    )
)


# ---------------------------------------------------------------------------------------------
# Image folders (Omniglot, CelebA, FFHQ): decoded once with Pillow into a uint8 tensor file
# cached next to the data (or under CACHE_ROOT/preprocessed when that folder is read-only).

PREPROCESS_VERSION = 1  # bump when a preprocessing protocol changes: old cache files are rebuilt
CACHE_FORMAT = "benchmark-preprocessed-images"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SIDE = 64  # CelebA and FFHQ are resized to IMAGE_SIDE x IMAGE_SIDE RGB
CELEBA_CROP = 148  # side of the central square cut from the 178x218 aligned CelebA images
OMNIGLOT_SIDE = 28
_DECODE_CHUNK = 256  # images per task of the decoding thread pool
_PARALLEL_MIN = 256  # fewer images than this are decoded on the calling thread
_ANNOUNCE_MIN = 5_000  # preprocessing at least this many images says so on stderr


def _pil():
    try:
        from PIL import Image
    except ImportError as e:
        raise DataError(f"reading image folders needs Pillow ({e}); install it: pip install pillow") from e
    return Image


def _bilinear() -> int:
    image = _pil()
    return getattr(image, "Resampling", image).BILINEAR


def _open_image(path: Path, mode: str, expected: str):
    """The image at ``path`` fully decoded and converted to ``mode`` ("L" or "RGB")."""
    image = _pil()
    try:
        with image.open(path) as img:
            img.load()  # decode everything now: truncated and corrupt files fail here
            return img.convert(mode)
    except (OSError, ValueError, SyntaxError, image.DecompressionBombError) as e:
        raise DataError(f"{path}: corrupt or unreadable image ({type(e).__name__}: {e}); expected {expected}") from e


def _omniglot_pixels(path: Path) -> np.ndarray:
    """[28, 28] uint8, ink = 255 on a 0 background (Omniglot's PNGs are black on white)."""
    img = _open_image(path, "L", "a PNG of an Omniglot character (105x105, black strokes on white)")
    small = img.resize((OMNIGLOT_SIDE, OMNIGLOT_SIDE), _bilinear())
    return 255 - np.asarray(small, dtype=np.uint8)


def _celeba_pixels(path: Path) -> np.ndarray:
    """[3, 64, 64] uint8: the central 148x148 square of an aligned image, resized bilinearly
    (with Pillow's antialiasing, as torchvision's CenterCrop(148) + Resize(64) on PIL images)."""
    img = _open_image(path, "RGB", "an aligned CelebA JPEG (178x218)")
    w, h = img.size
    if w < CELEBA_CROP or h < CELEBA_CROP:
        raise DataError(f"{path}: image is {w}x{h}; expected an aligned CelebA image (178x218), "
                        f"at least {CELEBA_CROP}x{CELEBA_CROP} for the center crop")
    left, top = int(round((w - CELEBA_CROP) / 2)), int(round((h - CELEBA_CROP) / 2))
    img = img.crop((left, top, left + CELEBA_CROP, top + CELEBA_CROP)).resize((IMAGE_SIDE, IMAGE_SIDE), _bilinear())
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _ffhq_pixels(path: Path) -> np.ndarray:
    """[3, 64, 64] uint8: the image (its central square if it is not square) resized bilinearly."""
    img = _open_image(path, "RGB", "a face image (PNG or JPEG)")
    w, h = img.size
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    img = img.resize((IMAGE_SIDE, IMAGE_SIDE), _bilinear())
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _decode_all(paths: Sequence[Path], pixels: Callable[[Path], np.ndarray], shape: tuple[int, ...]) -> torch.Tensor:
    """``pixels(path)`` of every path stacked into one uint8 tensor [N, *shape].

    Pillow releases the GIL while decoding and resizing, so a thread pool uses the cores
    without copying anything between processes.
    """
    out = np.empty((len(paths), *shape), dtype=np.uint8)

    def work(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            out[i] = pixels(paths[i])

    spans = [(lo, min(lo + _DECODE_CHUNK, len(paths))) for lo in range(0, len(paths), _DECODE_CHUNK)]
    workers = min(8, os.cpu_count() or 1)
    if len(paths) < _PARALLEL_MIN or workers == 1:
        for span in spans:
            work(*span)
    else:
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(work, *span) for span in spans]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return torch.from_numpy(out)


def _listing(root: Path, paths: Sequence[Path]) -> list[tuple[str, int]]:
    """(path relative to ``root``, size in bytes) of each file: what a cache file depends on."""
    return [(p.relative_to(root).as_posix(), p.stat().st_size) for p in paths]


def _fingerprint(protocol: dict, files: list[tuple[str, int]], annotations: Sequence[Path] = ()) -> str:
    """SHA-256 over the preprocessing protocol, the image files (names and sizes) and the
    contents of the annotation files: a cache file is reused only while all of them match."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": CACHE_FORMAT, "version": PREPROCESS_VERSION, "protocol": protocol},
                             sort_keys=True).encode())
    for name, size in files:
        digest.update(f"{name}\0{size}\n".encode())
    for path in annotations:
        digest.update(f"{path.name}\0".encode() + path.read_bytes())
    return digest.hexdigest()


def preprocessed_cache_files(source: Path, tag: str) -> list[Path]:
    """Where the preprocessed tensors of the images under ``source`` are kept, in order of
    preference: next to the data, else (read-only data) under the user's cache folder. Data
    under a system root (a package's folder) is never written to: only the cache folder."""
    source = Path(source).resolve()
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:12]
    fallback = CACHE_ROOT / "preprocessed" / f"{tag}-{digest}.pt"
    if any(source.is_relative_to(Path(root).resolve()) for root in SYSTEM_DATA_ROOTS):
        return [fallback]
    return [source / f"benchmark-{tag}.pt", fallback]


def _read_cache(path: Path, fingerprint: str) -> dict | None:
    if not path.is_file():
        return None
    try:  # memory-mapped: worker processes of one machine share the pages
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an unreadable or cut cache file is rebuilt
        return None
    if not isinstance(blob, dict) or blob.get("format") != CACHE_FORMAT or blob.get("fingerprint") != fingerprint:
        return None
    return blob


def _write_cache(blob: dict, path: Path) -> bool:
    """Save atomically (temporary file, then rename); False if the folder is not writable."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(blob, tmp)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return False


def _cached_images(name: str, source: Path, tag: str, fingerprint: str,
                   build: Callable[[], dict]) -> dict:
    """The preprocessed splits of ``name``: from a cache file with this ``fingerprint``, else
    ``build()`` (a dict of train_x, train_y, test_x, test_y, num_classes) saved for next time."""
    candidates = preprocessed_cache_files(source, tag)
    for path in candidates:
        blob = _read_cache(path, fingerprint)
        if blob is not None:
            return blob
    blob = {"format": CACHE_FORMAT, "version": PREPROCESS_VERSION, "fingerprint": fingerprint,
            "source": str(source), **build()}
    saved = next((path for path in candidates if _write_cache(blob, path)), None)
    if len(blob["train_x"]) + len(blob["test_x"]) >= _ANNOUNCE_MIN:
        where = f"cached in {saved}" if saved else "could not write a cache file in " + ", ".join(map(str, candidates))
        print(f"{name}: preprocessed; {where}", file=sys.stderr, flush=True)
    return blob


def _announce(name: str, count: int, source: Path) -> None:
    if count >= _ANNOUNCE_MIN:
        print(f"{name}: preprocessing {count} images from {source} (once: later loads read the cached "
              "tensors; minutes for a full data set)", file=sys.stderr, flush=True)


def _dataset_from_blob(name: str, blob: dict) -> Dataset:
    return Dataset(name, DataSplit(blob["train_x"], blob["train_y"]), DataSplit(blob["test_x"], blob["test_y"]),
                   int(blob["num_classes"]))


def _visible(name: str) -> bool:
    return not name.startswith(".")  # skips hidden files such as macOS "._00000.png" forks


def _torchvision_fetch(request: LoadRequest, name: str, fetch: Callable[[object, str], None], hint: str = "") -> Path:
    """Run ``fetch(torchvision.datasets, root)``; returns the root it downloaded into."""
    root = request.data_root or CACHE_ROOT
    try:
        import torchvision.datasets
    except ImportError as e:
        raise DataError(f"--download needs torchvision ({e}); install it or get the {name} files yourself") from e
    try:
        fetch(torchvision.datasets, str(root))
    except Exception as e:  # network, quota and archive errors come in many types
        raise DataError(f"downloading {name} with torchvision into {root} failed: {type(e).__name__}: {e}{hint}") from e
    return root


def _get_it(name: str, layout: str, download: str) -> str:
    return (f"To get it:\n"
            f"  - pass --data-root DIR or set {DATA_ENV}=DIR, with {layout}\n"
            f"  - {download}\n"
            f"  - see docs/datasets.md")


# --- Omniglot --------------------------------------------------------------------------------

OMNIGLOT_SETS = {"train": "images_background", "test": "images_evaluation"}


def _describe_omniglot(directory: Path) -> str:
    if not directory.is_dir():
        return "no such directory"
    missing = [f"{s}/" + (f" ({s}.zip is there: unzip it)" if (directory / f"{s}.zip").is_file() else "")
               for s in OMNIGLOT_SETS.values() if not (directory / s).is_dir()]
    return "missing " + ", ".join(missing)


def _find_omniglot(request: LoadRequest) -> Path:
    dirs = _candidate_dirs(request.data_root, ["", "omniglot-py", "omniglot"], ["omniglot", "omniglot/omniglot-py"])
    found = next((d for d in dirs if all((d / s).is_dir() for s in OMNIGLOT_SETS.values())), None)
    if found is None and request.download:
        root = _torchvision_fetch(request, "omniglot", lambda tvd, root: [
            tvd.Omniglot(root, background=background, download=True) for background in (True, False)])
        found = root / "omniglot-py"
    if found is None:
        looked = "\n".join(f"  {d} ({_describe_omniglot(d)})" for d in dirs)
        raise DataError(
            f"omniglot data not found; looked for the folders {' and '.join(OMNIGLOT_SETS.values())} "
            f"(torchvision's layout: <set>/<alphabet>/<character>/*.png) in:\n{looked}\n"
            + _get_it("omniglot", "DIR/omniglot-py/ (or DIR/omniglot/) holding both folders, unzipped",
                      f"pass --download to let torchvision fetch them into DIR/omniglot-py (default DIR {CACHE_ROOT})"))
    return found.resolve()


def _omniglot_characters(folder: Path) -> list[list[Path]]:
    """The PNGs of each character of one Omniglot set, characters sorted by (alphabet, character)."""
    characters = []
    for alphabet in sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p.name)):
        for character in sorted(p for p in alphabet.iterdir() if p.is_dir() and _visible(p.name)):
            pngs = sorted(p for p in character.iterdir() if p.suffix.lower() == ".png" and _visible(p.name))
            if pngs:
                characters.append(pngs)
    if not characters:
        raise DataError(f"{folder}: empty image folder: no character images found; expected "
                        f"{folder}/<alphabet>/<character>/*.png (torchvision's Omniglot layout)")
    return characters


def _load_omniglot(request: LoadRequest, name: str, binary: bool) -> Dataset:
    """Omniglot at 28x28; y = character index over both sets (background first, 1623 in all)."""
    found = _find_omniglot(request)
    sets = {split: _omniglot_characters(found / folder) for split, folder in OMNIGLOT_SETS.items()}
    paths = {split: [p for character in chars for p in character] for split, chars in sets.items()}
    protocol = {"side": OMNIGLOT_SIDE, "resample": "bilinear", "ink": 255, "label": "character over both sets"}
    fingerprint = _fingerprint(protocol, _listing(found, paths["train"] + paths["test"]))

    def build() -> dict:
        _announce("omniglot", len(paths["train"]) + len(paths["test"]), found)
        x = _decode_all(paths["train"] + paths["test"], _omniglot_pixels, (OMNIGLOT_SIDE, OMNIGLOT_SIDE))
        labels = [c for c, character in enumerate(sets["train"] + sets["test"]) for _ in character]
        y = torch.tensor(labels, dtype=torch.int64)
        n = len(paths["train"])
        return {"train_x": x[:n].unsqueeze(1).clone(), "train_y": y[:n].clone(),
                "test_x": x[n:].unsqueeze(1).clone(), "test_y": y[n:].clone(),
                "num_classes": len(sets["train"]) + len(sets["test"])}

    data = _dataset_from_blob(name, _cached_images("omniglot", found, "omniglot-28x28-v1", fingerprint, build))
    if binary:
        data = dataclasses.replace(data, train=_binarise(data.train), test=_binarise(data.test))
    return data


def _binarise(split: DataSplit) -> DataSplit:
    """A fixed threshold at 0.5 (pixel value >= 128 -> 255, else 0): the same bits in every run."""
    return DataSplit((split.x >= 128).to(torch.uint8) * 255, split.y)


# --- CelebA ----------------------------------------------------------------------------------

CELEBA_PARTITIONS = {"train": 0, "test": 2}  # 1 (validation, 19867 images) is not used
CELEBA_LABEL = "Male"


def _celeba_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem.txt`` (torchvision's layout) or ``directory/stem.csv`` (Kaggle's)."""
    return next((p for p in (directory / f"{stem}.txt", directory / f"{stem}.csv") if p.is_file()), None)


def _celeba_images(directory: Path) -> Path | None:
    folder = directory / "img_align_celeba"
    nested = folder / "img_align_celeba"  # the Kaggle archive nests the folder in itself
    return nested if nested.is_dir() else folder if folder.is_dir() else None


def _describe_celeba(directory: Path) -> str:
    if not directory.is_dir():
        return "no such directory"
    missing = [f"{stem}.txt" for stem in ("list_eval_partition", "list_attr_celeba") if not _celeba_file(directory, stem)]
    if _celeba_images(directory) is None:
        zipped = (directory / "img_align_celeba.zip").is_file()
        missing.append("img_align_celeba/" + (" (img_align_celeba.zip is there: unzip it)" if zipped else ""))
    return "missing " + ", ".join(missing)


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, line) of the non-blank lines of a text file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read text file: {e}") from e
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _celeba_partition(path: Path) -> list[tuple[str, int]]:
    """(image file, partition) per line of list_eval_partition.txt (``name p``) or .csv."""
    csv = path.suffix == ".csv"
    rows = []
    for n, line in _read_lines(path):
        if csv and n == 1 and line.startswith("image_id"):
            continue
        parts = line.split(",") if csv else line.split()
        if len(parts) != 2 or parts[1].strip() not in ("0", "1", "2"):
            raise DataError(f"{path}: line {n}: expected '<image file> <partition 0|1|2>', found {line[:80]!r}")
        rows.append((parts[0].strip(), int(parts[1])))
    if not rows:
        raise DataError(f"{path}: empty partition file; expected one line '<image file> <0|1|2>' per image")
    return rows


def _celeba_attribute(path: Path, attribute: str) -> dict[str, int]:
    """image file -> 1 if ``attribute`` is +1 else 0, from list_attr_celeba.txt (a count line,
    a line of the 40 attribute names, then ``name v1 .. v40`` with v = 1 or -1) or its .csv."""
    lines = _read_lines(path)
    if path.suffix == ".csv":
        names, rows, sep = (lines[0][1].split(",")[1:] if lines else []), lines[1:], ","
    else:
        if len(lines) < 2 or not lines[0][1].isdigit():
            raise DataError(f"{path}: expected the number of images on line 1 and the 40 attribute names "
                            "on line 2 (CelebA's list_attr_celeba.txt)")
        names, rows, sep = lines[1][1].split(), lines[2:], None
    names = [name.strip() for name in names]
    if attribute not in names:
        raise DataError(f"{path}: no attribute column {attribute!r}; expected CelebA's 40 attribute names, "
                        f"found {names[:6]}{' ...' if len(names) > 6 else ''}")
    column = names.index(attribute) + 1
    values = {}
    for n, line in rows:
        parts = line.split(sep)
        if len(parts) != len(names) + 1 or parts[column].strip() not in ("1", "-1"):
            raise DataError(f"{path}: line {n}: expected an image file and {len(names)} values of 1 or -1, "
                            f"found {line[:80]!r}")
        values[parts[0].strip()] = int(parts[column].strip() == "1")
    return values


def _find_celeba(request: LoadRequest) -> Path:
    dirs = _candidate_dirs(request.data_root, ["", "celeba"], ["celeba"])
    found = next((d for d in dirs if _celeba_file(d, "list_eval_partition")), None)
    if found is None and request.download:
        hint = ("\ntorchvision fetches CelebA from Google Drive (it needs the gdown package and often hits "
                "Drive's daily quota); see docs/datasets.md for getting the files by hand")
        root = _torchvision_fetch(request, "celeba", lambda tvd, root: tvd.CelebA(
            root, split="all", target_type="attr", download=True), hint)
        found = root / "celeba"
    if found is None:
        looked = "\n".join(f"  {d} ({_describe_celeba(d)})" for d in dirs)
        raise DataError(
            "celeba data not found; looked for list_eval_partition.txt (or .csv) beside img_align_celeba/ in:\n"
            f"{looked}\n"
            + _get_it("celeba", "DIR/celeba/ holding img_align_celeba/*.jpg, list_eval_partition.txt and "
                      "list_attr_celeba.txt (torchvision's layout; Kaggle's .csv files also work)",
                      f"pass --download to let torchvision fetch them into DIR/celeba (default DIR {CACHE_ROOT})"))
    return found.resolve()


def _load_celeba(request: LoadRequest) -> Dataset:
    """CelebA aligned faces: center crop 148, 64x64 RGB; train = partition 0, test = partition 2;
    y = the Male attribute (1 male, 0 female)."""
    found = _find_celeba(request)
    partition = _celeba_file(found, "list_eval_partition")
    attributes = _celeba_file(found, "list_attr_celeba")
    images = _celeba_images(found)
    if attributes is None or images is None:
        raise DataError(f"celeba data in {found} is incomplete: {_describe_celeba(found)}; expected "
                        "img_align_celeba/*.jpg, list_eval_partition.txt and list_attr_celeba.txt (the labels "
                        f"are its {CELEBA_LABEL} attribute)")
    with os.scandir(images) as entries:
        sizes = {e.name: e.stat().st_size for e in entries if e.is_file() and _visible(e.name)}
    if not sizes:
        raise DataError(f"{images}: empty image folder; expected the aligned CelebA JPEGs (000001.jpg ...)")
    protocol = {"crop": CELEBA_CROP, "side": IMAGE_SIDE, "resample": "bilinear", "partitions": CELEBA_PARTITIONS,
                "label": CELEBA_LABEL}
    fingerprint = _fingerprint(protocol, sorted(sizes.items()), [partition, attributes])

    def build() -> dict:
        rows = _celeba_partition(partition)
        labels = _celeba_attribute(attributes, CELEBA_LABEL)
        blob: dict = {"num_classes": 2}
        for split, part in CELEBA_PARTITIONS.items():
            names = [name for name, p in rows if p == part]
            if not names:
                raise DataError(f"{partition}: no image in partition {part} ({split}); expected CelebA's "
                                "partition 0 (train) and 2 (test)")
            missing = [name for name in names if name not in sizes]
            if missing:
                raise DataError(f"{images}: {len(missing)} image(s) listed in {partition.name} are missing, "
                                f"e.g. {', '.join(missing[:3])}")
            unlabelled = [name for name in names if name not in labels]
            if unlabelled:
                raise DataError(f"{attributes}: no row for {len(unlabelled)} image(s) listed in {partition.name}, "
                                f"e.g. {', '.join(unlabelled[:3])}")
            blob[f"{split}_names"] = names
            blob[f"{split}_y"] = torch.tensor([labels[name] for name in names], dtype=torch.int64)
        names = blob.pop("train_names") + blob.pop("test_names")
        _announce("celeba", len(names), images)
        x = _decode_all([images / name for name in names], _celeba_pixels, (3, IMAGE_SIDE, IMAGE_SIDE))
        n = len(blob["train_y"])
        blob.update(train_x=x[:n].clone(), test_x=x[n:].clone())
        return blob

    return _dataset_from_blob("celeba", _cached_images("celeba", found, "celeba-64x64-v1", fingerprint, build))


# --- FFHQ ------------------------------------------------------------------------------------

FFHQ_RELEASES = ("thumbnails128x128", "images1024x1024")  # preferred sub-folders, in this order
FFHQ_TRAIN_FRACTION = (6, 7)  # the first 6/7 of the sorted files train (60000 of 70000), the rest test

FFHQ_HOW_TO = (
    "torchvision cannot download FFHQ: get it yourself and put the images (PNG or JPEG, at any depth) in "
    "DIR/ffhq/, then pass --data-root DIR or set {env}=DIR. The official release's 128x128 thumbnails "
    "(NVlabs/ffhq-dataset on GitHub: `python download_ffhq.py --thumbs`, 70000 PNGs, about 2 GB) are "
    "enough; images1024x1024 or a resized mirror (e.g. 256x256 or 64x64) also work: everything is resized "
    "to 64x64. See docs/datasets.md."
)


def _find_ffhq(request: LoadRequest) -> Path:
    dirs = _candidate_dirs(request.data_root, ["ffhq", "FFHQ"], ["ffhq"])
    found = next((d for d in dirs if d.is_dir()), None)
    if found is None:
        looked = "\n".join(f"  {d} (no such directory)" for d in dirs)
        prefix = "--download cannot fetch ffhq. " if request.download else ""
        raise DataError(f"ffhq data not found; looked for a folder of face images in:\n{looked}\n"
                        f"{prefix}{FFHQ_HOW_TO.format(env=DATA_ENV)}")
    found = found.resolve()
    return next((found / r for r in FFHQ_RELEASES if (found / r).is_dir()), found)


def _load_ffhq(request: LoadRequest) -> Dataset:
    """FFHQ faces at 64x64 RGB; files sorted by path, the first 6/7 train, the rest test; y = 0."""
    found = _find_ffhq(request)
    paths = []
    for folder, subdirs, files in os.walk(found):
        subdirs[:] = [d for d in subdirs if _visible(d)]
        paths += [Path(folder) / f for f in files if _visible(f) and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    paths.sort(key=lambda p: p.relative_to(found).as_posix())
    if len(paths) < 2:
        what = "empty image folder: no" if not paths else "only one"
        raise DataError(f"{found}: {what} *.png / *.jpg face images found (at any depth); expected the FFHQ "
                        f"images. {FFHQ_HOW_TO.format(env=DATA_ENV)}")
    n_train = len(paths) * FFHQ_TRAIN_FRACTION[0] // FFHQ_TRAIN_FRACTION[1]
    protocol = {"side": IMAGE_SIDE, "resample": "bilinear", "crop": "central square", "split": "sorted, first 6/7 train"}
    fingerprint = _fingerprint(protocol, _listing(found, paths))

    def build() -> dict:
        _announce("ffhq", len(paths), found)
        x = _decode_all(paths, _ffhq_pixels, (3, IMAGE_SIDE, IMAGE_SIDE))
        return {"train_x": x[:n_train].clone(), "train_y": torch.zeros(n_train, dtype=torch.int64),
                "test_x": x[n_train:].clone(), "test_y": torch.zeros(len(paths) - n_train, dtype=torch.int64),
                "num_classes": 1}

    return _dataset_from_blob("ffhq", _cached_images("ffhq", found, "ffhq-64x64-v1", fingerprint, build))


register_dataset(DatasetSpec(
    "omniglot",
    "Omniglot: 105x105 characters resized to 28x28 grey (ink 1), background set 19280 train / evaluation "
    "set 13180 test; y = character (1623)",
    "image", lambda request: _load_omniglot(request, "omniglot", binary=False),
    shape=(1, 28, 28), train_size=19_280, test_size=13_180))
register_dataset(DatasetSpec(
    "omniglot-binary",
    "Omniglot as `omniglot`, binarised with a fixed threshold at 0.5",
    "image", lambda request: _load_omniglot(request, "omniglot-binary", binary=True),
    shape=(1, 28, 28), train_size=19_280, test_size=13_180))
register_dataset(DatasetSpec(
    "celeba",
    "CelebA aligned faces, center crop 148, 64x64 RGB; partition 0 train (162770) / 2 test (19962); y = Male",
    "image", _load_celeba, shape=(3, 64, 64), train_size=162_770, test_size=19_962))
register_dataset(DatasetSpec(
    "ffhq",
    "FFHQ faces (any release, e.g. the 128x128 thumbnails) resized to 64x64 RGB; sorted files, first 60000 "
    "train / last 10000 test; y = 0",
    "image", _load_ffhq, shape=(3, 64, 64), train_size=60_000, test_size=10_000))


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

    register_dataset(DatasetSpec(name, description, "toy", load, shape=(2,), train_size=TOY_TRAIN_SIZE,
                                 test_size=TOY_TEST_SIZE))


_register_toy("pinwheel", "2-D pinwheel with 5 spiralling arms (Johnson et al. 2016); y = arm", _pinwheel, 5)
_register_toy("chessboard", "2-D uniform on the 8 dark cells of a 4x4 board on [-2, 2]^2; y = cell", _chessboard, 8)
_register_toy(
    "gaussian-mixture",
    "2-D mixture of 8 Gaussians on a circle, two holding 98% of the mass; y = component",
    _gaussian_mixture,
    8,
)
