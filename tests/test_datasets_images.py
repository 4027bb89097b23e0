"""MNIST, Omniglot, CelebA and FFHQ: small files in each on-disk format, loaded through the
real code (load_dataset), and every malformed case named in the message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.data import catalog, celeba, ffhq, imagefolder, splits, toys
from benchmark.data.catalog import DATASETS, load_dataset
from benchmark.data.splits import DataSplit
from benchmark.errors import DataError

from fakes import write_fake_celeba, write_fake_fashion, write_fake_ffhq, write_fake_omniglot
from fakes import check_split_types, fake_torchvision


# Fresh cache; no system, cache or $BENCHMARK_DATA folders unless a test sets them.
pytestmark = pytest.mark.usefixtures("no_system_data")


# --- uint8 storage ---------------------------------------------------------------------------


def test_as_float_is_exact_and_chunked(monkeypatch):
    x = torch.arange(256, dtype=torch.uint8).repeat(10).reshape(10, 1, 16, 16)
    monkeypatch.setattr(splits, "_CONVERT_CHUNK", 300)  # several chunks of one row
    out = DataSplit(x, torch.zeros(10, dtype=torch.long)).as_float()
    assert out.x.dtype == torch.float32
    assert torch.equal(out.x, x.float() / 255)
    floats = DataSplit(torch.rand(3, 2), torch.zeros(3, dtype=torch.long))
    assert floats.as_float() is floats


def test_cache_keeps_uint8(tmp_path):
    write_fake_fashion(tmp_path, gz=False)
    catalog.check_available("fashion-mnist", data_root=tmp_path)
    (full,) = catalog._CACHE.values()
    assert full.train.x.dtype == torch.uint8
    assert load_dataset("fashion-mnist", data_root=tmp_path).train.x.dtype == torch.float32


def test_training_on_uint8_pixels_matches_float(tmp_path):
    """The runner keeps an image training split as uint8 (a quarter of the device memory) and the
    trainer converts each batch: the same training, bit for bit, as on the float split."""
    from benchmark.config import ModelConfig, TrainConfig
    from benchmark.ml.method import build_method
    from benchmark.ml.train import Trainer

    write_fake_fashion(tmp_path, gz=False, n_train=100)
    pixels = load_dataset("fashion-mnist", data_root=tmp_path, float_train=False)
    floats = load_dataset("fashion-mnist", data_root=tmp_path)
    assert pixels.train.x.dtype == torch.uint8 and pixels.test.x.dtype == torch.float32
    assert torch.equal(splits.to_unit(pixels.train.x), floats.train.x)
    assert load_dataset("pinwheel", train_size=10, float_train=False).train.x.dtype == torch.float32
    means = []
    for ds in (pixels, floats):
        torch.manual_seed(0)
        method = build_method("vae", {}, ModelConfig(arch="mlp-shallow", latent_dim=2, options={"width": 8}), ds.shape)
        trainer = Trainer([method], [ds.train.x], TrainConfig(epochs=2, batch_size=32), [torch.Generator().manual_seed(1)])
        means.append([trainer.run_epoch() for _ in range(2)])
    assert means[0] == means[1]


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


# --- Omniglot --------------------------------------------------------------------------------


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


# --- CelebA ----------------------------------------------------------------------------------


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


# --- FFHQ ------------------------------------------------------------------------------------


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


def test_ffhq_many_images_use_the_thread_pool(tmp_path, monkeypatch):
    monkeypatch.setattr(imagefolder, "_PARALLEL_MIN", 2)
    monkeypatch.setattr(imagefolder, "_DECODE_CHUNK", 2)
    write_fake_ffhq(tmp_path / "ffhq", n=9, side=64)
    ds = load_dataset("ffhq", data_root=tmp_path)
    assert (len(ds.train), len(ds.test)) == (7, 2)
    reference = imagefolder.decode_all(sorted((tmp_path / "ffhq").rglob("*.png")), ffhq._pixels, (3, 64, 64))
    assert torch.equal(torch.cat([ds.train.x, ds.test.x]), reference.float() / 255)


def test_published_sizes_are_declared():
    expected = {"mnist": (60_000, 10_000), "fashion-mnist": (60_000, 10_000), "omniglot": (19_280, 13_180),
                "omniglot-binary": (19_280, 13_180), "celeba": (162_770, 19_962), "ffhq": (60_000, 10_000),
                "pinwheel": (toys.TOY_TRAIN_SIZE, toys.TOY_TEST_SIZE)}
    for name, sizes in expected.items():
        assert catalog.published_sizes(name) == sizes
        assert DATASETS[name].shape is not None


def test_system_data_is_never_written_to(tmp_path):
    write_fake_omniglot(tmp_path / "system" / "omniglot")
    ds = load_dataset("omniglot")
    assert len(ds.train) == 8
    assert not list((tmp_path / "system").rglob("*.pt"))
    assert len(list((tmp_path / "cache" / "preprocessed").glob("omniglot-28x28-v1-*.pt"))) == 1
