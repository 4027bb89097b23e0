"""Small files in the real on-disk formats, written by the tests themselves; stand-ins for
torchvision's downloaders; and what every loaded image set holds."""

from __future__ import annotations

import gzip
import struct
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from benchmark.data import splits


# A method plugin that takes over its training step without writing one for a pack: its runs
# train alone, with its own words on why (pack_refusal).
OWN_STEP_PLUGIN = '''
from benchmark.plugin import Method, register_method


@register_method
class OwnStep(Method):
    """rec + KL, in its own training step."""

    name = "own-step"
    pack_refusal = "its step is its own"

    def loss(self, x, progress):
        out = self.model(x)
        return {"loss": (out.rec + out.kl).mean(), "rec": out.rec.mean(), "kl": out.kl.mean()}

    def training_step(self, x, progress, tools):
        parts = self.loss(x, progress)
        tools.step(parts["loss"])
        return parts
'''

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, IDX_CODES[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_fake_fashion(directory: Path, gz: bool, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict:
    """Tiny Fashion-MNIST look-alike; returns the arrays written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
        arrays[prefix] = (images, labels)
    return arrays


# --- image folders ---------------------------------------------------------------------------

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def write_fake_omniglot(directory: Path, alphabets: dict[str, tuple[int, int]] | None = None,
                        per_character: int = 2, seed: int = 0) -> dict[str, list[tuple[Path, int]]]:
    """torchvision's Omniglot layout: ``images_background`` and ``images_evaluation``, each
    ``<alphabet>/character<NN>/<id>_<NN>.png``, 105x105 one-bit PNGs, black strokes on white.

    ``alphabets``: set name -> (number of alphabets, characters per alphabet). Returns, per set,
    the (file, expected global character index) pairs in the loader's order. The first image of
    each set is all white (no ink), the second all black (all ink); the rest hold random strokes.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    alphabets = alphabets or {"images_background": (2, 2), "images_evaluation": (1, 2)}
    written: dict[str, list[tuple[Path, int]]] = {}
    label = 0
    for set_name, (n_alphabets, n_characters) in alphabets.items():
        files = []
        for a in range(n_alphabets):
            for c in range(n_characters):
                folder = directory / set_name / f"Alphabet_{set_name[7]}{a}" / f"character{c + 1:02d}"
                folder.mkdir(parents=True, exist_ok=True)
                for k in range(per_character):
                    ink = rng.random((105, 105)) < 0.2
                    if not files:
                        ink[:] = False
                    elif len(files) == 1:
                        ink[:] = True
                    path = folder / f"{label:04d}_{k + 1:02d}.png"
                    Image.fromarray(~ink).convert("1").save(path)
                    files.append((path, label))
                label += 1
        written[set_name] = files
    return written


def celeba_image(size: tuple[int, int] = (178, 218), crop: int = 148, inside=(20, 40, 220), outside=(230, 20, 20)):
    """An aligned-CelebA-sized RGB image: colour ``inside`` in the central crop x crop square,
    ``outside`` around it."""
    from PIL import Image

    w, h = size
    pixels = np.empty((h, w, 3), dtype=np.uint8)
    pixels[:] = outside
    left, top = round((w - crop) / 2), round((h - crop) / 2)
    pixels[top:top + crop, left:left + crop] = inside
    return Image.fromarray(pixels)


def write_fake_celeba(directory: Path, partitions: list[int] | None = None, males: list[int] | None = None,
                      kaggle: bool = False) -> list[str]:
    """torchvision's CelebA layout in ``directory`` (its ``celeba`` folder): img_align_celeba/NNNNNN.jpg
    (178x218 JPEGs, see :func:`celeba_image`), list_eval_partition.txt and list_attr_celeba.txt.
    ``kaggle=True`` writes the Kaggle release instead (nested image folder, .csv files).
    Returns the image file names."""
    partitions = partitions if partitions is not None else [0, 0, 0, 1, 2, 2]
    males = males if males is not None else [i % 2 for i in range(len(partitions))]
    names = [f"{i + 1:06d}.jpg" for i in range(len(partitions))]
    images = directory / "img_align_celeba" / ("img_align_celeba" if kaggle else "")
    images.mkdir(parents=True, exist_ok=True)
    for name in names:
        celeba_image().save(images / name, quality=95)
    sep = "," if kaggle else " "
    attributes = [[1 if a == "Male" and male else -1 for a in CELEBA_ATTRIBUTES] for male in males]
    rows = [sep.join([name, *map(str, values)]) for name, values in zip(names, attributes)]
    if kaggle:
        (directory / "list_eval_partition.csv").write_text(
            "image_id,partition\n" + "".join(f"{n},{p}\n" for n, p in zip(names, partitions)))
        (directory / "list_attr_celeba.csv").write_text(
            ",".join(["image_id", *CELEBA_ATTRIBUTES]) + "\n" + "\n".join(rows) + "\n")
    else:
        (directory / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, partitions)))
        (directory / "list_attr_celeba.txt").write_text(
            f"{len(names)}\n" + " ".join(CELEBA_ATTRIBUTES) + "\n" + "\n".join(rows) + "\n")
    return names


def write_fake_ffhq(directory: Path, n: int = 7, side: int = 128, per_folder: int = 4, suffix: str = ".png",
                    seed: int = 0) -> list[Path]:
    """An FFHQ-like folder: ``directory/<NNNNN>/<NNNNN>.png`` (as the official thumbnails), each
    image one flat random colour. Returns the files in sorted order."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        folder = directory / f"{i // per_folder * 1000:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:05d}{suffix}"
        colour = rng.integers(0, 256, 3, dtype=np.uint8)
        Image.fromarray(np.broadcast_to(colour, (side, side, 3)).copy()).save(path)
        files.append(path)
    return files


# --- text corpora ----------------------------------------------------------------------------

TEXT_WORDS = ("the", "cat", "sat", "on", "a", "mat", "dog", "ran", "N", "<unk>", "and", "big")


def fake_sentences(n: int, rng: np.random.Generator, max_words: int = 9) -> list[list[str]]:
    """``n`` sentences of 1..max_words words of :data:`TEXT_WORDS`."""
    return [[str(w) for w in rng.choice(TEXT_WORDS, rng.integers(1, max_words + 1))] for _ in range(n)]


def write_fake_ptb(directory: Path, n: tuple[int, int, int] = (30, 8, 10), seed: int = 0) -> dict[str, list[list[str]]]:
    """``ptb.{train,valid,test}.txt`` in Mikolov's format (a space before and after each
    sentence, ``<unk>`` and ``N`` as words) in ``directory``. The first training sentence holds
    every word of :data:`TEXT_WORDS`, so valid and test use only training words. Returns the
    sentences of each split."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, count in zip(("train", "valid", "test"), n):
        sentences = fake_sentences(count, rng)
        if split == "train":
            sentences[0] = list(TEXT_WORDS)
        (directory / f"ptb.{split}.txt").write_text("".join(f" {' '.join(s)} \n" for s in sentences))
        written[split] = sentences
    return written


def write_fake_lagging(directory: Path, name: str, labels: int | None = None, n: tuple[int, int, int] = (30, 8, 10),
                       seed: int = 0) -> dict[str, tuple[list[list[str]], list[int] | None]]:
    """``<name>.{train,valid,test}.txt`` in the lagging-encoder release's format in ``directory``:
    one document per line, ``LABEL<TAB>text`` with labels 0..labels-1 when ``labels`` is given
    (yelp), plain text otherwise (yahoo). Every label occurs in training. Returns (sentences,
    labels) of each split."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, count in zip(("train", "valid", "test"), n):
        sentences = fake_sentences(count, rng, max_words=15)
        if split == "train":
            sentences[0] = list(TEXT_WORDS)
        ys = None if labels is None else [i % labels if split == "train" else int(rng.integers(labels))
                                          for i in range(count)]
        texts = [" ".join(s) for s in sentences]
        lines = texts if ys is None else [f"{y}\t{text}" for y, text in zip(ys, texts)]
        (directory / f"{name}.{split}.txt").write_text("".join(line + "\n" for line in lines))
        written[split] = (sentences, ys)
    return written


def fake_torchvision(monkeypatch, **classes) -> None:
    """Stand-ins for torchvision.datasets.<Name> (no network): imported lazily by the loaders."""
    datasets = types.ModuleType("torchvision.datasets")
    for name, cls in classes.items():
        setattr(datasets, name, cls)
    package = types.ModuleType("torchvision")
    package.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)


def check_split_types(ds: splits.Dataset, shape: tuple[int, ...]) -> None:
    import torch

    from benchmark.data.catalog import DATASETS

    assert ds.shape == shape == DATASETS[ds.name].shape
    for split in (ds.train, ds.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert 0 <= float(split.x.min()) and float(split.x.max()) <= 1
        assert 0 <= int(split.y.min()) and int(split.y.max()) < ds.num_classes
