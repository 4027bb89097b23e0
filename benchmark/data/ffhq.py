"""FFHQ faces (Karras et al. 2019): any public release in a folder of images, resized to 64x64 RGB.

The files are sorted by path; the first 6/7 train (60000 of 70000), the rest test; y = 0.
torchvision cannot download FFHQ: :data:`FFHQ_HOW_TO` says how to get it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import roots
from .imagefolder import (IMAGE_SIDE, IMAGE_SUFFIXES, announce, bilinear, cached_images, dataset_from_blob, decode_all,
                          fingerprint, listing, open_image, visible)
from .splits import Dataset, LoadRequest


def _pixels(path: Path) -> np.ndarray:
    """[3, 64, 64] uint8: the image (its central square if it is not square) resized bilinearly."""
    img = open_image(path, "RGB", "a face image (PNG or JPEG)")
    w, h = img.size
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    img = img.resize((IMAGE_SIDE, IMAGE_SIDE), bilinear())
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


FFHQ_RELEASES = ("thumbnails128x128", "images1024x1024")  # preferred sub-folders, in this order
FFHQ_TRAIN_FRACTION = (6, 7)  # the first 6/7 of the sorted files train (60000 of 70000), the rest test

FFHQ_HOW_TO = (
    "torchvision cannot download FFHQ: get it yourself and put the images (PNG or JPEG, at any depth) in "
    "DIR/ffhq/, then pass --data-root DIR or set {env}=DIR. The official release's 128x128 thumbnails "
    "(NVlabs/ffhq-dataset on GitHub: `python download_ffhq.py --thumbs`, 70000 PNGs, about 2 GB) are "
    "enough; images1024x1024 or a resized mirror (e.g. 256x256 or 64x64) also work: everything is resized "
    "to 64x64. See docs/datasets.md."
)


def _find_ffhq(request: LoadRequest) -> Path:
    dirs = roots.candidate_dirs(request.data_root, ["ffhq", "FFHQ"], ["ffhq"])
    found = next((d for d in dirs if d.is_dir()), None)
    if found is None:
        looked = "\n".join(f"  {d} (no such directory)" for d in dirs)
        prefix = "--download cannot fetch ffhq. " if request.download else ""
        raise DataError(f"ffhq data not found; looked for a folder of face images in:\n{looked}\n"
                        f"{prefix}{FFHQ_HOW_TO.format(env=roots.DATA_ENV)}")
    found = found.resolve()
    return next((found / r for r in FFHQ_RELEASES if (found / r).is_dir()), found)


def load_ffhq(request: LoadRequest) -> Dataset:
    """FFHQ faces at 64x64 RGB; files sorted by path, the first 6/7 train, the rest test; y = 0."""
    found = _find_ffhq(request)
    paths = []
    for folder, subdirs, files in os.walk(found):
        subdirs[:] = [d for d in subdirs if visible(d)]
        paths += [Path(folder) / f for f in files if visible(f) and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    paths.sort(key=lambda p: p.relative_to(found).as_posix())
    if len(paths) < 2:
        what = "empty image folder: no" if not paths else "only one"
        raise DataError(f"{found}: {what} *.png / *.jpg face images found (at any depth); expected the FFHQ "
                        f"images. {FFHQ_HOW_TO.format(env=roots.DATA_ENV)}")
    n_train = len(paths) * FFHQ_TRAIN_FRACTION[0] // FFHQ_TRAIN_FRACTION[1]
    protocol = {"side": IMAGE_SIDE, "resample": "bilinear", "crop": "central square", "split": "sorted, first 6/7 train"}
    key = fingerprint(protocol, listing(found, paths))

    def build() -> dict:
        announce("ffhq", len(paths), found)
        x = decode_all(paths, _pixels, (3, IMAGE_SIDE, IMAGE_SIDE))
        return {"train_x": x[:n_train].clone(), "train_y": torch.zeros(n_train, dtype=torch.int64),
                "test_x": x[n_train:].clone(), "test_y": torch.zeros(len(paths) - n_train, dtype=torch.int64),
                "num_classes": 1}

    return dataset_from_blob("ffhq", cached_images("ffhq", found, "ffhq-64x64-v1", key, build))
