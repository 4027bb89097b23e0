"""FFHQ (benchmark/data/ffhq.py): small folders of face images, loaded through load_dataset, and
every malformed case named in the message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.data import catalog
from benchmark.data.catalog import load_dataset
from benchmark.errors import DataError

from fakes import check_split_types, write_fake_ffhq


# Fresh cache; no system, cache or $BENCHMARK_DATA folders unless a test sets them.
pytestmark = pytest.mark.usefixtures("no_system_data")


@pytest.mark.parametrize("release", ["", "thumbnails128x128"])
def test_ffhq_folder_and_split(tmp_path, release):
    files = write_fake_ffhq(tmp_path / "ffhq" / release, n=7, side=96)
    (tmp_path / "ffhq" / "LICENSE.txt").write_text("not an image")
    (tmp_path / "ffhq" / "00000" / "._00000.png").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "ffhq" / "00000" / "._00000.png").write_bytes(b"macOS fork, hidden")
    ds = load_dataset("ffhq", data_root=tmp_path)
    check_split_types(ds, (3, 64, 64))
    assert (len(ds.train), len(ds.test)) == (6, 1) and ds.num_classes == 1
    assert ds.train.y.tolist() == [0] * 6
    # Flat colours survive the resize: the last file (sorted by path) is the test image.
    from PIL import Image

    last = np.asarray(Image.open(files[-1]))[0, 0]
    assert torch.equal((ds.test.x[0, :, 5, 5] * 255).round(), torch.tensor(last, dtype=torch.float32))


def test_ffhq_non_square_jpegs(tmp_path):
    from PIL import Image

    folder = tmp_path / "ffhq"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (90, 60), (10 * i, 100, 200)).save(folder / f"{i}.jpg")
    ds = load_dataset("ffhq", data_root=tmp_path)
    assert ds.shape == (3, 64, 64) and (len(ds.train), len(ds.test)) == (2, 1)


def test_ffhq_missing_explains_how_to_get_it(tmp_path):
    for download in (False, True):
        with pytest.raises(DataError) as err:
            load_dataset("ffhq", data_root=tmp_path, download=download)
        message = str(err.value)
        assert f"{tmp_path / 'ffhq'} (no such directory)" in message
        assert "download_ffhq.py --thumbs" in message and "DIR/ffhq/" in message
        assert ("--download cannot fetch ffhq" in message) == download


def test_ffhq_empty_and_corrupt(tmp_path):
    (tmp_path / "ffhq" / "00000").mkdir(parents=True)
    with pytest.raises(DataError, match=r"ffhq: empty image folder: no \*\.png / \*\.jpg face images"):
        load_dataset("ffhq", data_root=tmp_path)
    files = write_fake_ffhq(tmp_path / "ffhq", n=3)
    files[2].write_bytes(b"garbage")
    catalog._CACHE.clear()
    with pytest.raises(DataError, match=rf"{files[2]}: corrupt or unreadable image"):
        load_dataset("ffhq", data_root=tmp_path)
