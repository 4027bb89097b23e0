"""Omniglot (benchmark/data/omniglot.py): small folders of PNGs in each layout, loaded through
load_dataset, and every malformed case named in the message."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.data.catalog import load_dataset
from benchmark.errors import DataError

from fakes import check_split_types, fake_torchvision, write_fake_omniglot


# Fresh cache; no system, cache or $BENCHMARK_DATA folders unless a test sets them.
pytestmark = pytest.mark.usefixtures("no_system_data")


@pytest.mark.parametrize("layout", ["omniglot-py", "omniglot", "."])
def test_omniglot_layouts_and_labels(tmp_path, layout):
    files = write_fake_omniglot(tmp_path / "root" / layout)
    ds = load_dataset("omniglot", data_root=tmp_path / "root")
    check_split_types(ds, (1, 28, 28))
    assert (len(ds.train), len(ds.test)) == (8, 4)
    assert ds.num_classes == 6  # 4 background + 2 evaluation characters, numbered over both sets
    assert ds.train.y.tolist() == [label for _, label in files["images_background"]]
    assert ds.test.y.tolist() == [label for _, label in files["images_evaluation"]] == [4, 4, 5, 5]
    for split in (ds.train, ds.test):  # white page -> no ink (0), black page -> all ink (1)
        assert float(split.x[0].max()) == 0 and float(split.x[1].min()) == 1
        assert 0 < float(split.x[2:].mean()) < 0.5


def test_omniglot_binary(tmp_path):
    write_fake_omniglot(tmp_path / "omniglot-py")
    grey = load_dataset("omniglot", data_root=tmp_path)
    binary = load_dataset("omniglot-binary", data_root=tmp_path)
    check_split_types(binary, (1, 28, 28))
    assert set(binary.train.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(binary.train.x, (grey.train.x >= 128 / 255).float())
    assert torch.equal(binary.test.y, grey.test.y)


def test_omniglot_missing_set(tmp_path):
    write_fake_omniglot(tmp_path / "omniglot-py", {"images_background": (1, 1)})
    (tmp_path / "omniglot-py" / "images_evaluation.zip").write_bytes(b"PK")
    with pytest.raises(DataError) as err:
        load_dataset("omniglot", data_root=tmp_path)
    message = str(err.value)
    assert f"{tmp_path / 'omniglot-py'} (missing images_evaluation/ (images_evaluation.zip is there: unzip it))" in message
    assert "--download" in message and "images_background" in message


def test_omniglot_empty_folder(tmp_path):
    write_fake_omniglot(tmp_path, {"images_background": (1, 1)})
    (tmp_path / "images_evaluation" / "Alphabet_x" / "character01").mkdir(parents=True)
    with pytest.raises(DataError, match=r"images_evaluation: empty image folder.*<alphabet>/<character>/\*\.png"):
        load_dataset("omniglot", data_root=tmp_path)


def test_omniglot_corrupt_image(tmp_path):
    files = write_fake_omniglot(tmp_path)
    bad = files["images_evaluation"][1][0]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError) as err:
        load_dataset("omniglot", data_root=tmp_path)
    assert f"{bad}: corrupt or unreadable image" in str(err.value)
    assert "expected a PNG of an Omniglot character" in str(err.value)


def test_omniglot_download_uses_torchvision(tmp_path, monkeypatch):
    calls = []

    class Omniglot:
        def __init__(self, root, background, download):
            calls.append(background)
            name = "images_background" if background else "images_evaluation"
            write_fake_omniglot(Path(root) / "omniglot-py", {name: (1, 1)})

    fake_torchvision(monkeypatch, Omniglot=Omniglot)
    ds = load_dataset("omniglot", data_root=tmp_path, download=True)
    assert calls == [True, False] and (len(ds.train), len(ds.test)) == (2, 2)
