"""CelebA aligned faces (Liu et al. 2015): center crop 148, resized to 64x64 RGB.

torchvision's layout (or Kaggle's .csv files): ``img_align_celeba/*.jpg``,
``list_eval_partition.txt`` (partition 0 trains, 2 tests; 1, validation, is not used) and
``list_attr_celeba.txt`` (y = the Male attribute). Pixels are uint8 [N, 3, 64, 64].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import roots
from .imagefolder import (IMAGE_SIDE, announce, bilinear, cached_images, dataset_from_blob, decode_all, fingerprint,
                          open_image, visible)
from .splits import Dataset, LoadRequest

CELEBA_CROP = 148  # side of the central square cut from the 178x218 aligned CelebA images


def _pixels(path: Path) -> np.ndarray:
    """[3, 64, 64] uint8: the central 148x148 square of an aligned image, resized bilinearly
    (with Pillow's antialiasing, as torchvision's CenterCrop(148) + Resize(64) on PIL images)."""
    img = open_image(path, "RGB", "an aligned CelebA JPEG (178x218)")
    w, h = img.size
    if w < CELEBA_CROP or h < CELEBA_CROP:
        raise DataError(f"{path}: image is {w}x{h}; expected an aligned CelebA image (178x218), "
                        f"at least {CELEBA_CROP}x{CELEBA_CROP} for the center crop")
    left, top = int(round((w - CELEBA_CROP) / 2)), int(round((h - CELEBA_CROP) / 2))
    img = img.crop((left, top, left + CELEBA_CROP, top + CELEBA_CROP)).resize((IMAGE_SIDE, IMAGE_SIDE), bilinear())
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


CELEBA_PARTITIONS = {"train": 0, "test": 2}  # 1 (validation, 19867 images) is not used
CELEBA_LABEL = "Male"


def _celeba_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem.txt`` (torchvision's layout) or ``directory/stem.csv`` (Kaggle's)."""
    return next((p for p in (directory / f"{stem}.txt", directory / f"{stem}.csv") if p.is_file()), None)


def _celeba_images(directory: Path) -> Path | None:
    folder = directory / "img_align_celeba"
    nested = folder / "img_align_celeba"  # the Kaggle archive nests the folder in itself
    return nested if nested.is_dir() else folder if folder.is_dir() else None


def _describe_celeba(directory: Path) -> str:
    if not directory.is_dir():
        return "no such directory"
    missing = [f"{stem}.txt" for stem in ("list_eval_partition", "list_attr_celeba") if not _celeba_file(directory, stem)]
    if _celeba_images(directory) is None:
        zipped = (directory / "img_align_celeba.zip").is_file()
        missing.append("img_align_celeba/" + (" (img_align_celeba.zip is there: unzip it)" if zipped else ""))
    return "missing " + ", ".join(missing)


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, line) of the non-blank lines of a text file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read text file: {e}") from e
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _celeba_partition(path: Path) -> list[tuple[str, int]]:
    """(image file, partition) per line of list_eval_partition.txt (``name p``) or .csv."""
    csv = path.suffix == ".csv"
    rows = []
    for n, line in _read_lines(path):
        if csv and n == 1 and line.startswith("image_id"):
            continue
        parts = line.split(",") if csv else line.split()
        if len(parts) != 2 or parts[1].strip() not in ("0", "1", "2"):
            raise DataError(f"{path}: line {n}: expected '<image file> <partition 0|1|2>', found {line[:80]!r}")
        rows.append((parts[0].strip(), int(parts[1])))
    if not rows:
        raise DataError(f"{path}: empty partition file; expected one line '<image file> <0|1|2>' per image")
    return rows


def _celeba_attribute(path: Path, attribute: str) -> dict[str, int]:
    """image file -> 1 if ``attribute`` is +1 else 0, from list_attr_celeba.txt (a count line,
    a line of the 40 attribute names, then ``name v1 .. v40`` with v = 1 or -1) or its .csv."""
    lines = _read_lines(path)
    if path.suffix == ".csv":
        names, rows, sep = (lines[0][1].split(",")[1:] if lines else []), lines[1:], ","
    else:
        if len(lines) < 2 or not lines[0][1].isdigit():
            raise DataError(f"{path}: expected the number of images on line 1 and the 40 attribute names "
                            "on line 2 (CelebA's list_attr_celeba.txt)")
        names, rows, sep = lines[1][1].split(), lines[2:], None
    names = [name.strip() for name in names]
    if attribute not in names:
        raise DataError(f"{path}: no attribute column {attribute!r}; expected CelebA's 40 attribute names, "
                        f"found {names[:6]}{' ...' if len(names) > 6 else ''}")
    column = names.index(attribute) + 1
    values = {}
    for n, line in rows:
        parts = line.split(sep)
        if len(parts) != len(names) + 1 or parts[column].strip() not in ("1", "-1"):
            raise DataError(f"{path}: line {n}: expected an image file and {len(names)} values of 1 or -1, "
                            f"found {line[:80]!r}")
        values[parts[0].strip()] = int(parts[column].strip() == "1")
    return values


def _find_celeba(request: LoadRequest) -> Path:
    dirs = roots.candidate_dirs(request.data_root, ["", "celeba"], ["celeba"])
    found = next((d for d in dirs if _celeba_file(d, "list_eval_partition")), None)
    if found is None and request.download:
        hint = ("\ntorchvision fetches CelebA from Google Drive (it needs the gdown package and often hits "
                "Drive's daily quota); see docs/datasets.md for getting the files by hand")
        root = roots.torchvision_fetch(request, "celeba", lambda tvd, root: tvd.CelebA(
            root, split="all", target_type="attr", download=True), hint)
        found = root / "celeba"
    if found is None:
        looked = "\n".join(f"  {d} ({_describe_celeba(d)})" for d in dirs)
        raise DataError(
            "celeba data not found; looked for list_eval_partition.txt (or .csv) beside img_align_celeba/ in:\n"
            f"{looked}\n"
            + roots.how_to_get("DIR/celeba/ holding img_align_celeba/*.jpg, list_eval_partition.txt and "
                               "list_attr_celeba.txt (torchvision's layout; Kaggle's .csv files also work)",
                               f"pass --download to let torchvision fetch them into DIR/celeba (default DIR {roots.CACHE_ROOT})"))
    return found.resolve()


def load_celeba(request: LoadRequest) -> Dataset:
    """CelebA aligned faces: center crop 148, 64x64 RGB; train = partition 0, test = partition 2;
    y = the Male attribute (1 male, 0 female)."""
    found = _find_celeba(request)
    partition = _celeba_file(found, "list_eval_partition")
    attributes = _celeba_file(found, "list_attr_celeba")
    images = _celeba_images(found)
    if attributes is None or images is None:
        raise DataError(f"celeba data in {found} is incomplete: {_describe_celeba(found)}; expected "
                        "img_align_celeba/*.jpg, list_eval_partition.txt and list_attr_celeba.txt (the labels "
                        f"are its {CELEBA_LABEL} attribute)")
    with os.scandir(images) as entries:
        sizes = {e.name: e.stat().st_size for e in entries if e.is_file() and visible(e.name)}
    if not sizes:
        raise DataError(f"{images}: empty image folder; expected the aligned CelebA JPEGs (000001.jpg ...)")
    protocol = {"crop": CELEBA_CROP, "side": IMAGE_SIDE, "resample": "bilinear", "partitions": CELEBA_PARTITIONS,
                "label": CELEBA_LABEL}
    key = fingerprint(protocol, sorted(sizes.items()), [partition, attributes])

    def build() -> dict:
        rows = _celeba_partition(partition)
        labels = _celeba_attribute(attributes, CELEBA_LABEL)
        blob: dict = {"num_classes": 2}
        for split, part in CELEBA_PARTITIONS.items():
            names = [name for name, p in rows if p == part]
            if not names:
                raise DataError(f"{partition}: no image in partition {part} ({split}); expected CelebA's "
                                "partition 0 (train) and 2 (test)")
            missing = [name for name in names if name not in sizes]
            if missing:
                raise DataError(f"{images}: {len(missing)} image(s) listed in {partition.name} are missing, "
                                f"e.g. {', '.join(missing[:3])}")
            unlabelled = [name for name in names if name not in labels]
            if unlabelled:
                raise DataError(f"{attributes}: no row for {len(unlabelled)} image(s) listed in {partition.name}, "
                                f"e.g. {', '.join(unlabelled[:3])}")
            blob[f"{split}_names"] = names
            blob[f"{split}_y"] = torch.tensor([labels[name] for name in names], dtype=torch.int64)
        names = blob.pop("train_names") + blob.pop("test_names")
        announce("celeba", len(names), images)
        x = decode_all([images / name for name in names], _pixels, (3, IMAGE_SIDE, IMAGE_SIDE))
        n = len(blob["train_y"])
        blob.update(train_x=x[:n].clone(), test_x=x[n:].clone())
        return blob

    return dataset_from_blob("celeba", cached_images("celeba", found, "celeba-64x64-v1", key, build))

