"""IDX files (benchmark/data/idx.py): the reader on every type code and malformed file, and the
loaders of MNIST and Fashion-MNIST on small files in each layout (plain or gzipped; ROOT,
ROOT/<Name>/raw or ROOT/<name>): search order, subsets, what a missing or inconsistent file says."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.data import roots, splits
from benchmark.data.catalog import load_dataset
from benchmark.data.idx import read_idx
from benchmark.errors import DataError

from fakes import check_split_types, fake_torchvision, idx_bytes, write_fake_fashion, write_idx


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


# --- MNIST -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [".", "MNIST/raw", "mnist"])
def test_mnist_layouts(tmp_path, layout):
    arrays = write_fake_fashion(tmp_path / "root" / layout, gz=layout == "MNIST/raw")
    ds = load_dataset("mnist", data_root=tmp_path / "root")
    assert ds.name == "mnist" and ds.num_classes == 10
    check_split_types(ds, (1, 28, 28))
    images, labels = arrays["train"]
    assert torch.equal(ds.train.x, torch.from_numpy(images).unsqueeze(1).float() / 255)
    assert ds.train.y.tolist() == labels.tolist()


def test_mnist_debian_style_system_folder(tmp_path):
    write_fake_fashion(tmp_path / "system" / "mnist", gz=True)
    assert len(load_dataset("mnist").train) == 20


def test_mnist_missing_and_truncated(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_root=tmp_path)
    for hint in [f"{tmp_path / 'MNIST' / 'raw'} (no such directory)", "train-images-idx3-ubyte", "--download"]:
        assert hint in str(err.value)
    assert f"{tmp_path / 'system' / 'mnist'}" not in str(err.value)  # the data root given is the only place
    assert "apt-get" not in str(err.value)
    write_fake_fashion(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated IDX file"):
        load_dataset("mnist", data_root=tmp_path)


def test_mnist_download_uses_torchvision(tmp_path, monkeypatch):
    class MNIST:
        def __init__(self, root, download):
            assert download
            write_fake_fashion(Path(root) / "MNIST" / "raw", gz=True)

    fake_torchvision(monkeypatch, MNIST=MNIST)
    assert len(load_dataset("mnist", data_root=tmp_path, download=True).train) == 20
