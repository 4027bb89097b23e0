from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.data import catalog, idx, roots, splits, toys
from benchmark.data.catalog import load_dataset
from benchmark.data.idx import read_idx
from benchmark.data.splits import DataSplit
from benchmark.errors import DataError, UnknownNameError

from fakes import idx_bytes, write_fake_fashion, write_idx

TOYS = ["pinwheel", "chessboard", "gaussian-mixture"]


# Fresh cache; no system, cache or $BENCHMARK_DATA folders unless a test sets them.
pytestmark = pytest.mark.usefixtures("no_system_data")


# --- IDX -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-128, 0, 127], dtype=np.int8),
        np.array([[-30000, 5], [7, 30000]], dtype=np.int16),
        np.array([-(2**31), 1, 2**31 - 1], dtype=np.int32),
        np.linspace(-1, 1, 10, dtype=np.float32).reshape(5, 2),
        np.array([[[np.pi]]], dtype=np.float64),
        np.zeros((0, 28), dtype=np.uint8),
    ],
    ids=lambda a: f"{a.dtype}{list(a.shape)}",
)
def test_idx_round_trip(tmp_path, array, gz):
    out = read_idx(write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array, gz))
    assert out.shape == array.shape
    assert out.dtype == torch.from_numpy(array).dtype
    np.testing.assert_array_equal(out.numpy(), array)


GOOD = idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize(
    "raw, name, expected",
    [
        (b"\x01\x00" + GOOD[2:], "a.idx", "magic number 0x01000802, expected 0x0000TTDD"),
        (gzip.compress(GOOD), "a.idx", "looks gzipped"),
        (GOOD[:2] + b"\x07" + GOOD[3:], "a.idx", "unknown IDX type code 0x07"),
        (GOOD[:-1], "a.idx", "expected 6 bytes of data for shape (2, 3), found 5"),
        (GOOD[:6], "a.idx", "expected 8 bytes of dimension sizes, found 2"),
        (GOOD[:3], "a.idx", "truncated"),
        (GOOD + b"xy", "a.idx", "trailing garbage in IDX file: expected 6 bytes of data for shape (2, 3), found 8"),
        (GOOD, "a.idx.gz", "unreadable gzip"),
        (gzip.compress(GOOD)[:-12], "a.idx.gz", "unreadable gzip"),
    ],
    ids=["magic", "gzipped-plain", "type", "data", "dims", "header", "trailing", "not-gzip", "cut-gzip"],
)
def test_idx_malformed(tmp_path, raw, name, expected):
    path = tmp_path / name
    path.write_bytes(raw)
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope")


# --- fashion-mnist ---------------------------------------------------------------------------


def check_fashion(ds: splits.Dataset, arrays: dict) -> None:
    assert ds.name == "fashion-mnist" and ds.num_classes == 10 and ds.shape == (1, 28, 28)
    for split, prefix in ((ds.train, "train"), (ds.test, "t10k")):
        images, labels = arrays[prefix]
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape == (len(images), 1, 28, 28)
        assert split.x.min() == 0 and split.x.max() == 1
        torch.testing.assert_close(split.x, torch.from_numpy(images).unsqueeze(1).float() / 255)
        assert split.y.tolist() == labels.tolist()


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", [".", "FashionMNIST/raw", "fashion-mnist"])
def test_fashion_layouts(tmp_path, layout, gz):
    arrays = write_fake_fashion(tmp_path / "root" / layout, gz)
    check_fashion(load_dataset("fashion-mnist", data_root=tmp_path / "root"), arrays)


def test_fashion_prefers_plain_files(tmp_path):
    arrays = write_fake_fashion(tmp_path, gz=False)
    write_fake_fashion(tmp_path, gz=True, seed=1)
    check_fashion(load_dataset("fashion-mnist", data_root=tmp_path), arrays)


def test_fashion_search_order(tmp_path, monkeypatch):
    first = write_fake_fashion(tmp_path / "user", gz=False, seed=1)
    env = write_fake_fashion(tmp_path / "env", gz=True, seed=2)
    system = write_fake_fashion(tmp_path / "system" / "fashion-mnist", gz=True, seed=3)
    check_fashion(load_dataset("fashion-mnist"), system)
    monkeypatch.setenv(roots.DATA_ENV, str(tmp_path / "env"))
    check_fashion(load_dataset("fashion-mnist"), env)
    check_fashion(load_dataset("fashion-mnist", data_root=tmp_path / "user"), first)


def test_fashion_subsets(tmp_path):
    write_fake_fashion(tmp_path, gz=False)
    ds = load_dataset("fashion-mnist", data_root=tmp_path, train_size=5, test_size=3, seed=4)
    assert (len(ds.train), len(ds.test)) == (5, 3)
    again = load_dataset("fashion-mnist", data_root=tmp_path, train_size=5, test_size=3, seed=4)
    assert torch.equal(ds.train.x, again.train.x) and torch.equal(ds.test.y, again.test.y)


def test_fashion_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(roots.DATA_ENV, str(tmp_path / "env"))
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "train-images-idx3-ubyte").write_bytes(b"")
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", data_root=tmp_path / "user")
    message = str(err.value)
    for place in ["user", "user/FashionMNIST/raw", "user/fashion-mnist"]:  # the data root given: only there
        assert f"  {tmp_path / place} (" in message
    for elsewhere in ["env", "system", "cache"]:
        assert f"  {tmp_path / elsewhere}" not in message
    assert "missing train-labels-idx1-ubyte, t10k-images" in message
    with pytest.raises(DataError) as err:  # without --data-root, $BENCHMARK_DATA is the data root
        load_dataset("fashion-mnist")
    assert f"  {tmp_path / 'env'} (no such directory)" in str(err.value) and f"{tmp_path / 'system'}" not in str(err.value)
    monkeypatch.delenv(roots.DATA_ENV)
    with pytest.raises(DataError) as err:  # without either: the system roots, then the cache
        load_dataset("fashion-mnist")
    for place in ["system/fashion-mnist", "cache", "cache/FashionMNIST/raw"]:
        assert f"  {tmp_path / place} (" in str(err.value)
    for hint in ["apt-get install dataset-fashion-mnist", "--data-root", "BENCHMARK_DATA", "--download"]:
        assert hint in message


@pytest.mark.parametrize(
    "images, labels, expected",
    [
        (np.zeros((3, 28, 27), np.uint8), np.zeros(3, np.uint8), "shape [N, 28, 28]"),
        (np.zeros((3, 28, 28), np.float32), np.zeros(3, np.uint8), "expected uint8 images"),
        (np.zeros((3, 28, 28), np.uint8), np.zeros(2, np.uint8), "expected 3 labels"),
        (np.zeros((3, 28, 28), np.uint8), np.array([0, 10, 1], np.uint8), "labels must lie in 0..9"),
    ],
    ids=["dims", "dtype", "count", "range"],
)
def test_fashion_inconsistent(tmp_path, images, labels, expected):
    write_fake_fashion(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match=r"t10k-.*" + expected.replace("[", r"\[").replace("]", r"\]")):
        load_dataset("fashion-mnist", data_root=tmp_path)


DEBIAN = Path("/usr/share/datasets")


@pytest.mark.skipif(not (DEBIAN / "fashion-mnist").is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_debian(monkeypatch):
    monkeypatch.setattr(roots, "SYSTEM_DATA_ROOTS", [DEBIAN])
    ds = load_dataset("fashion-mnist")
    assert (len(ds.train), len(ds.test)) == (60000, 10000)
    assert ds.shape == (1, 28, 28) and ds.train.x.dtype == torch.float32
    assert ds.train.x.min() == 0 and ds.train.x.max() == 1
    assert ds.train.y.bincount().tolist() == [6000] * 10 and ds.test.y.bincount().tolist() == [1000] * 10


# --- subsets, registry -----------------------------------------------------------------------


def test_subset():
    split = DataSplit(torch.arange(100.0).unsqueeze(1), torch.arange(100))

    def draw(seed: int, n: int | None) -> DataSplit:
        return split.subset(n, torch.Generator().manual_seed(seed))

    a, b, c = draw(1, 30), draw(1, 30), draw(2, 30)
    assert len(a) == 30 and a.y.unique().numel() == 30
    assert torch.equal(a.x.squeeze(1).long(), a.y)  # rows stay paired
    assert torch.equal(a.y, b.y) and not torch.equal(a.y, c.y)
    assert draw(1, None) is split and draw(1, 100) is split and draw(1, 500) is split
    with pytest.raises(ValueError):
        draw(1, -1)


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


# --- toy sets --------------------------------------------------------------------------------


@pytest.mark.parametrize("name, num_classes", [("pinwheel", 5), ("chessboard", 8), ("gaussian-mixture", 8)])
def test_toy_shapes_and_determinism(name, num_classes):
    ds = load_dataset(name, seed=0)
    assert ds.shape == (2,) and ds.num_classes == num_classes
    assert (len(ds.train), len(ds.test)) == (toys.TOY_TRAIN_SIZE, toys.TOY_TEST_SIZE)
    for split in (ds.train, ds.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.y.min() >= 0 and split.y.max() < num_classes
        assert split.x.abs().max() < 10 and 0.3 < split.x.std() < 3
    assert not torch.equal(ds.train.x[: toys.TOY_TEST_SIZE], ds.test.x)
    catalog._CACHE.clear()
    assert torch.equal(load_dataset(name, seed=0).train.x, ds.train.x)
    assert not torch.equal(load_dataset(name, seed=1).train.x, ds.train.x)


def test_chessboard_in_dark_cells():
    ds = load_dataset("chessboard", seed=3)
    for split in (ds.train, ds.test):
        corner = torch.tensor(toys.CHESSBOARD_CELLS, dtype=torch.float32)[split.y] - 2
        assert ((split.x >= corner) & (split.x <= corner + 1)).all()
        i, j = (split.x + 2).floor().clamp(0, 3).long().unbind(1)
        assert ((i + j) % 2 == 0).all()
        assert split.y.bincount().numel() == 8


def test_gaussian_mixture_imbalanced():
    y = load_dataset("gaussian-mixture").train.y
    counts = y.bincount(minlength=8).sort(descending=True).values
    assert counts[:2].sum() > 0.9 * len(y)
    assert (counts[2:] > 0).all()


def test_pinwheel_arms():
    ds = load_dataset("pinwheel")
    y, x = ds.train.y, ds.train.x
    assert y.bincount().numel() == 5 and (y.bincount() > 1000).all()
    # every point lies on its arm's spiral: angle = 2 pi arm / 5 + 0.25 exp(radius), up to the tangential noise
    radius = x.norm(dim=1)
    residual = torch.atan2(x[:, 1], x[:, 0]) - (2 * torch.pi * y / 5 + 0.25 * radius.exp())
    residual = torch.remainder(residual + torch.pi, 2 * torch.pi) - torch.pi
    assert residual.abs().quantile(0.99) < 0.3
    assert 0.9 < radius.mean() < 1.1
