"""Image folders (Omniglot, CelebA, FFHQ): decoding with Pillow and the cache of preprocessed tensors.

A loader lists its image files, fingerprints them with its preprocessing protocol
(:func:`fingerprint`) and asks :func:`cached_images` for the splits: read from a uint8 tensor
file cached next to the data (or under the user's cache folder when the data folder is
read-only), else decoded once with :func:`decode_all` and saved for next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import DataError
from . import roots
from .files import DataFiles, source_file, tensors_sha256
from .splits import Dataset, DataSplit

PREPROCESS_VERSION = 1  # bump when a preprocessing protocol changes: old cache files are rebuilt
CACHE_FORMAT = "benchmark-preprocessed-images"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SIDE = 64  # CelebA and FFHQ are resized to IMAGE_SIDE x IMAGE_SIDE RGB
_DECODE_CHUNK = 256  # images per task of the decoding thread pool
_PARALLEL_MIN = 256  # fewer images than this are decoded on the calling thread
_ANNOUNCE_MIN = 5_000  # preprocessing at least this many images says so on stderr


def _pil():
    try:
        from PIL import Image
    except ImportError as e:
        raise DataError(f"reading image folders needs Pillow ({e}); install it: pip install pillow") from e
    return Image


def bilinear() -> int:
    """Pillow's bilinear resampling filter (``Image.Resampling.BILINEAR`` since Pillow 9.1)."""
    image = _pil()
    return getattr(image, "Resampling", image).BILINEAR


def open_image(path: Path, mode: str, expected: str):
    """The image at ``path`` fully decoded and converted to ``mode`` ("L" or "RGB")."""
    image = _pil()
    try:
        with image.open(path) as img:
            img.load()  # decode everything now: truncated and corrupt files fail here
            return img.convert(mode)
    except (OSError, ValueError, SyntaxError, image.DecompressionBombError) as e:
        raise DataError(f"{path}: corrupt or unreadable image ({type(e).__name__}: {e}); expected {expected}") from e


def decode_all(paths: Sequence[Path], pixels: Callable[[Path], np.ndarray], shape: tuple[int, ...]) -> torch.Tensor:
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


def listing(root: Path, paths: Sequence[Path]) -> list[tuple[str, int]]:
    """(path relative to ``root``, size in bytes) of each file: what a cache file depends on."""
    return [(p.relative_to(root).as_posix(), p.stat().st_size) for p in paths]


def fingerprint(protocol: dict, files: list[tuple[str, int]], annotations: Sequence[Path] = ()) -> str:
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
    fallback = roots.CACHE_ROOT / "preprocessed" / f"{tag}-{digest}.pt"
    if any(source.is_relative_to(Path(root).resolve()) for root in roots.SYSTEM_DATA_ROOTS):
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


def cached_images(name: str, source: Path, tag: str, fingerprint: str,
                   build: Callable[[], dict]) -> dict:
    """The preprocessed splits of ``name``: from a cache file with this ``fingerprint``, else
    ``build()`` (a dict of train_x, train_y, test_x, test_y, num_classes) saved for next time.
    The returned dict also names the cache file it came from or went to (``cache_file``; None
    when none could be written)."""
    candidates = preprocessed_cache_files(source, tag)
    for path in candidates:
        blob = _read_cache(path, fingerprint)
        if blob is not None:
            return {**blob, "cache_file": path}
    blob = {"format": CACHE_FORMAT, "version": PREPROCESS_VERSION, "fingerprint": fingerprint,
            "source": str(source), **build()}
    saved = next((path for path in candidates if _write_cache(blob, path)), None)
    if len(blob["train_x"]) + len(blob["test_x"]) >= _ANNOUNCE_MIN:
        where = f"cached in {saved}" if saved else "could not write a cache file in " + ", ".join(map(str, candidates))
        print(f"{name}: preprocessed; {where}", file=sys.stderr, flush=True)
    return {**blob, "cache_file": saved}


def announce(name: str, count: int, source: Path) -> None:
    if count >= _ANNOUNCE_MIN:
        print(f"{name}: preprocessing {count} images from {source} (once: later loads read the cached "
              "tensors; minutes for a full data set)", file=sys.stderr, flush=True)


def dataset_from_blob(name: str, blob: dict) -> Dataset:
    """The splits of a :func:`cached_images` dict; its provenance is the cache file (hashed), or
    the tensors' digest when no cache file could be written."""
    tensors = [blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"]]
    cache = blob.get("cache_file")
    files = (DataFiles("preprocessed", (source_file(cache),), folder=str(blob["source"])) if cache is not None
             else DataFiles("preprocessed", folder=str(blob["source"]), sha256=tensors_sha256(tensors)))
    return Dataset(name, DataSplit(blob["train_x"], blob["train_y"]), DataSplit(blob["test_x"], blob["test_y"]),
                   int(blob["num_classes"]), files)


def visible(name: str) -> bool:
    return not name.startswith(".")  # skips hidden files such as macOS "._00000.png" forks

