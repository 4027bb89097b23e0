"""CelebA (benchmark/data/celeba.py): small files in each on-disk format (torchvision's, Kaggle's),
loaded through the real code (load_dataset), the cache file of the preprocessed images, and every
malformed case named in the message."""

from __future__ import annotations

import pytest
import torch

from benchmark.data import catalog, celeba, imagefolder, splits
from benchmark.data.catalog import load_dataset
from benchmark.errors import DataError

from fakes import check_split_types, fake_torchvision, write_fake_celeba


# Fresh cache; no system, cache or $BENCHMARK_DATA folders unless a test sets them.
pytestmark = pytest.mark.usefixtures("no_system_data")


def check_celeba(ds: splits.Dataset) -> None:
    check_split_types(ds, (3, 64, 64))
    assert (len(ds.train), len(ds.test)) == (3, 2)  # partition 1 (validation) is left out
    assert ds.num_classes == 2
    assert ds.train.y.tolist() == [0, 1, 0] and ds.test.y.tolist() == [0, 1]  # Male of images 1-3 and 5-6
    # The center crop keeps only the inner colour (20, 40, 220); the border (230, 20, 20) is cut off.
    inner = ds.train.x[:, :, 3:-3, 3:-3] * 255
    colour = torch.tensor([20.0, 40.0, 220.0]).view(1, 3, 1, 1)
    assert (inner - colour).abs().max() < 12


@pytest.mark.parametrize("kaggle", [False, True], ids=["torchvision", "kaggle"])
def test_celeba_layouts(tmp_path, kaggle):
    write_fake_celeba(tmp_path / "celeba", kaggle=kaggle)
    check_celeba(load_dataset("celeba", data_root=tmp_path))


def test_celeba_cache_file_is_written_and_reused(tmp_path, monkeypatch):
    names = write_fake_celeba(tmp_path / "celeba")
    first = load_dataset("celeba", data_root=tmp_path)
    cache = tmp_path / "celeba" / "benchmark-celeba-64x64-v1.pt"
    assert cache.is_file()
    catalog._CACHE.clear()

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(celeba, "_pixels", no_decoding)
    again = load_dataset("celeba", data_root=tmp_path)
    assert torch.equal(again.train.x, first.train.x) and torch.equal(again.test.y, first.test.y)
    # A changed file set invalidates the cache: the images are decoded again.
    (tmp_path / "celeba" / "img_align_celeba" / names[0]).write_bytes(b"not a jpeg")
    catalog._CACHE.clear()
    with pytest.raises(AssertionError, match="decoded"):
        load_dataset("celeba", data_root=tmp_path)


def test_celeba_cache_falls_back_to_cache_root(tmp_path, monkeypatch):
    write_fake_celeba(tmp_path / "celeba")
    write = imagefolder._write_cache
    read_only = tmp_path / "celeba"
    monkeypatch.setattr(imagefolder, "_write_cache", lambda blob, path: path.parent != read_only and write(blob, path))
    load_dataset("celeba", data_root=tmp_path)
    assert not list(read_only.glob("*.pt"))
    assert len(list((tmp_path / "cache" / "preprocessed").glob("celeba-64x64-v1-*.pt"))) == 1
    catalog._CACHE.clear()
    monkeypatch.setattr(celeba, "_pixels", lambda path: pytest.fail("decoded again"))
    check_celeba(load_dataset("celeba", data_root=tmp_path))


def test_celeba_corrupt_cache_file_is_rebuilt(tmp_path):
    write_fake_celeba(tmp_path / "celeba")
    load_dataset("celeba", data_root=tmp_path)
    cache = tmp_path / "celeba" / "benchmark-celeba-64x64-v1.pt"
    cache.write_bytes(cache.read_bytes()[:100])
    catalog._CACHE.clear()
    check_celeba(load_dataset("celeba", data_root=tmp_path))
    assert cache.stat().st_size > 1000


def test_celeba_missing_partition_file(tmp_path):
    write_fake_celeba(tmp_path / "celeba")
    (tmp_path / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("celeba", data_root=tmp_path)
    assert f"{tmp_path / 'celeba'} (missing list_eval_partition.txt)" in str(err.value)
    assert "--download" in str(err.value)


def test_celeba_missing_attribute_file(tmp_path):
    write_fake_celeba(tmp_path / "celeba")
    (tmp_path / "celeba" / "list_attr_celeba.txt").unlink()
    with pytest.raises(DataError, match="incomplete: missing list_attr_celeba.txt"):
        load_dataset("celeba", data_root=tmp_path)


@pytest.mark.parametrize(
    "file, text, expected",
    [
        ("list_eval_partition.txt", "000001.jpg 0\n000002.jpg 7\n", r"list_eval_partition.txt: line 2: expected"),
        ("list_eval_partition.txt", "\n", "empty partition file"),
        ("list_eval_partition.txt", "000001.jpg 0\n000002.jpg 1\n", r"no image in partition 2 \(test\)"),
        ("list_attr_celeba.txt", "6\nSmiling Young\n", "no attribute column 'Male'"),
        ("list_attr_celeba.txt", "Male\n", "number of images on line 1"),
    ],
    ids=["bad-partition", "empty-partition", "no-test", "no-male", "no-header"],
)
def test_celeba_malformed_annotations(tmp_path, file, text, expected):
    write_fake_celeba(tmp_path / "celeba")
    (tmp_path / "celeba" / file).write_text(text)
    with pytest.raises(DataError, match=expected) as err:
        load_dataset("celeba", data_root=tmp_path)
    assert str(tmp_path / "celeba" / file) in str(err.value)


def test_celeba_missing_and_unlabelled_images(tmp_path):
    names = write_fake_celeba(tmp_path / "celeba")
    (tmp_path / "celeba" / "img_align_celeba" / names[4]).unlink()
    with pytest.raises(DataError, match=r"img_align_celeba: 1 image\(s\) listed in list_eval_partition.txt are missing, e.g. 000005.jpg"):
        load_dataset("celeba", data_root=tmp_path)
    names = write_fake_celeba(tmp_path / "other" / "celeba")
    attributes = tmp_path / "other" / "celeba" / "list_attr_celeba.txt"
    attributes.write_text("\n".join(attributes.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DataError, match=r"list_attr_celeba.txt: no row for 1 image\(s\).*000006.jpg"):
        load_dataset("celeba", data_root=tmp_path / "other")


def test_celeba_corrupt_and_small_images(tmp_path):
    names = write_fake_celeba(tmp_path / "celeba")
    image = tmp_path / "celeba" / "img_align_celeba" / names[1]
    image.write_bytes(image.read_bytes()[:300])  # a truncated JPEG
    with pytest.raises(DataError) as err:
        load_dataset("celeba", data_root=tmp_path)
    assert f"{image}: corrupt or unreadable image" in str(err.value)
    from fakes import celeba_image

    celeba_image(size=(100, 120), crop=80).save(image)
    with pytest.raises(DataError, match=r"image is 100x120; expected an aligned CelebA image"):
        load_dataset("celeba", data_root=tmp_path)


def test_celeba_unzipped_hint_and_empty_folder(tmp_path):
    write_fake_celeba(tmp_path / "celeba")
    folder = tmp_path / "celeba" / "img_align_celeba"
    for path in folder.iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"img_align_celeba: empty image folder"):
        load_dataset("celeba", data_root=tmp_path)
    folder.rmdir()
    (tmp_path / "celeba" / "img_align_celeba.zip").write_bytes(b"PK")
    catalog._CACHE.clear()
    with pytest.raises(DataError, match=r"img_align_celeba.zip is there: unzip it"):
        load_dataset("celeba", data_root=tmp_path)


def test_celeba_download_failure_is_explained(tmp_path, monkeypatch):
    class CelebA:
        def __init__(self, root, split, target_type, download):
            raise RuntimeError("Too many users have viewed or downloaded this file recently")

    fake_torchvision(monkeypatch, CelebA=CelebA)
    with pytest.raises(DataError) as err:
        load_dataset("celeba", data_root=tmp_path, download=True)
    assert "downloading celeba with torchvision" in str(err.value) and "gdown" in str(err.value)
