"""The catalogue of data sets (benchmark/data/catalog.py): load_dataset's sizes, device and cache
(full splits, kept as uint8, shared across seeds), the published split sizes, unknown names."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.data import catalog, idx, splits, toys
from benchmark.data.catalog import DATASETS, load_dataset
from benchmark.data.idx import read_idx
from benchmark.errors import DataError, UnknownNameError

from fakes import write_fake_fashion


TOYS = ["pinwheel", "chessboard", "gaussian-mixture"]


# Fresh cache; no system, cache or $BENCHMARK_DATA folders unless a test sets them.
pytestmark = pytest.mark.usefixtures("no_system_data")


def test_load_dataset_sizes_and_device():
    ds = load_dataset("pinwheel", train_size=50, test_size=20, device="cpu")
    assert (len(ds.train), len(ds.test)) == (50, 20)
    assert ds.train.x.device.type == "cpu"
    with pytest.raises(DataError, match="train_size"):
        load_dataset("pinwheel", train_size=0)


def test_load_dataset_caches_full_splits(monkeypatch):
    spec = catalog.DATASETS["chessboard"]
    requests = []

    def counting_load(request: splits.LoadRequest) -> splits.Dataset:
        requests.append(request)
        return spec.load(request)

    monkeypatch.setitem(catalog.DATASETS._items, "chessboard", dataclasses.replace(spec, load=counting_load))
    load_dataset("chessboard", seed=0, train_size=10)
    load_dataset("chessboard", seed=0, train_size=20, test_size=5)
    assert len(requests) == 1
    load_dataset("chessboard", seed=1)
    assert [r.seed for r in requests] == [0, 1]


def test_image_cache_ignores_seed(tmp_path, monkeypatch):
    write_fake_fashion(tmp_path, gz=True)
    reads = []
    monkeypatch.setattr(idx, "read_idx", lambda path: reads.append(path) or read_idx(path))
    a = load_dataset("fashion-mnist", data_root=tmp_path, seed=0, train_size=10)
    b = load_dataset("fashion-mnist", data_root=str(tmp_path / "." / "."), seed=1, train_size=10)
    assert len(reads) == 4
    assert not torch.equal(a.train.x, b.train.x)  # same files, other subset


def test_unknown_dataset():
    with pytest.raises(UnknownNameError) as err:
        load_dataset("mnist-typo")
    for name in ["fashion-mnist", *TOYS]:
        assert name in str(err.value)


def test_cache_keeps_uint8(tmp_path):
    write_fake_fashion(tmp_path, gz=False)
    catalog.check_available("fashion-mnist", data_root=tmp_path)
    (full,) = catalog._CACHE.values()
    assert full.train.x.dtype == torch.uint8
    assert load_dataset("fashion-mnist", data_root=tmp_path).train.x.dtype == torch.float32


def test_published_sizes_are_declared():
    expected = {"mnist": (60_000, 10_000), "fashion-mnist": (60_000, 10_000), "omniglot": (19_280, 13_180),
                "omniglot-binary": (19_280, 13_180), "celeba": (162_770, 19_962), "ffhq": (60_000, 10_000),
                "pinwheel": (toys.TOY_TRAIN_SIZE, toys.TOY_TEST_SIZE)}
    for name, sizes in expected.items():
        assert catalog.published_sizes(name) == sizes
        assert DATASETS[name].shape is not None
