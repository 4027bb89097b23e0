"""Image folders (benchmark/data/imagefolder.py): decoding in a thread pool, and the cache of
preprocessed tensors (named in the records, never written into the system's data folders)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from benchmark.data import ffhq, imagefolder
from benchmark.data.catalog import load_dataset

from fakes import write_fake_ffhq, write_fake_omniglot


# Fresh cache; no system, cache or $BENCHMARK_DATA folders unless a test sets them.
pytestmark = pytest.mark.usefixtures("no_system_data")


def test_ffhq_many_images_use_the_thread_pool(tmp_path, monkeypatch):
    monkeypatch.setattr(imagefolder, "_PARALLEL_MIN", 2)
    monkeypatch.setattr(imagefolder, "_DECODE_CHUNK", 2)
    write_fake_ffhq(tmp_path / "ffhq", n=9, side=64)
    ds = load_dataset("ffhq", data_root=tmp_path)
    assert (len(ds.train), len(ds.test)) == (7, 2)
    reference = imagefolder.decode_all(sorted((tmp_path / "ffhq").rglob("*.png")), ffhq._pixels, (3, 64, 64))
    assert torch.equal(torch.cat([ds.train.x, ds.test.x]), reference.float() / 255)


def test_system_data_is_never_written_to(tmp_path):
    write_fake_omniglot(tmp_path / "system" / "omniglot")
    ds = load_dataset("omniglot")
    assert len(ds.train) == 8
    assert not list((tmp_path / "system").rglob("*.pt"))
    assert len(list((tmp_path / "cache" / "preprocessed").glob("omniglot-28x28-v1-*.pt"))) == 1


def test_preprocessed_images_name_their_cache_file(tmp_path, no_system_data):
    from benchmark.data.catalog import load_dataset

    write_fake_ffhq(tmp_path / "ffhq", n=7)
    files = load_dataset("ffhq", data_root=tmp_path).files.to_dict()
    cache = Path(files["files"][0]["path"])
    assert files["kind"] == "preprocessed" and files["folder"] == str((tmp_path / "ffhq").resolve())
    assert cache.name == "benchmark-ffhq-64x64-v1.pt" and cache.parent == (tmp_path / "ffhq").resolve()
    assert files["files"][0]["sha256"] == hashlib.sha256(cache.read_bytes()).hexdigest()
