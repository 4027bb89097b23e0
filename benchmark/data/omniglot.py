"""Omniglot (Lake et al. 2015): torchvision's folders of 105x105 character PNGs, resized to 28x28.

The background set trains, the evaluation set tests; y is the character index over both sets
(1623 in all). Pixels are uint8 with ink = 255; ``omniglot-binary`` thresholds them at 0.5.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from . import roots
from .imagefolder import (announce, bilinear, cached_images, dataset_from_blob, decode_all, fingerprint, listing,
                          open_image, visible)
from .splits import Dataset, DataSplit, LoadRequest

OMNIGLOT_SIDE = 28


def _pixels(path: Path) -> np.ndarray:
    """[28, 28] uint8, ink = 255 on a 0 background (Omniglot's PNGs are black on white)."""
    img = open_image(path, "L", "a PNG of an Omniglot character (105x105, black strokes on white)")
    small = img.resize((OMNIGLOT_SIDE, OMNIGLOT_SIDE), bilinear())
    return 255 - np.asarray(small, dtype=np.uint8)


OMNIGLOT_SETS = {"train": "images_background", "test": "images_evaluation"}


def _describe_omniglot(directory: Path) -> str:
    if not directory.is_dir():
        return "no such directory"
    missing = [f"{s}/" + (f" ({s}.zip is there: unzip it)" if (directory / f"{s}.zip").is_file() else "")
               for s in OMNIGLOT_SETS.values() if not (directory / s).is_dir()]
    return "missing " + ", ".join(missing)


def _find_omniglot(request: LoadRequest) -> Path:
    dirs = roots.candidate_dirs(request.data_root, ["", "omniglot-py", "omniglot"], ["omniglot", "omniglot/omniglot-py"])
    found = next((d for d in dirs if all((d / s).is_dir() for s in OMNIGLOT_SETS.values())), None)
    if found is None and request.download:
        root = roots.torchvision_fetch(request, "omniglot", lambda tvd, root: [
            tvd.Omniglot(root, background=background, download=True) for background in (True, False)])
        found = root / "omniglot-py"
    if found is None:
        looked = "\n".join(f"  {d} ({_describe_omniglot(d)})" for d in dirs)
        raise DataError(
            f"omniglot data not found; looked for the folders {' and '.join(OMNIGLOT_SETS.values())} "
            f"(torchvision's layout: <set>/<alphabet>/<character>/*.png) in:\n{looked}\n"
            + roots.how_to_get("DIR/omniglot-py/ (or DIR/omniglot/) holding both folders, unzipped",
                               f"pass --download to let torchvision fetch them into DIR/omniglot-py (default DIR {roots.CACHE_ROOT})"))
    return found.resolve()


def _omniglot_characters(folder: Path) -> list[list[Path]]:
    """The PNGs of each character of one Omniglot set, characters sorted by (alphabet, character)."""
    characters = []
    for alphabet in sorted(p for p in folder.iterdir() if p.is_dir() and visible(p.name)):
        for character in sorted(p for p in alphabet.iterdir() if p.is_dir() and visible(p.name)):
            pngs = sorted(p for p in character.iterdir() if p.suffix.lower() == ".png" and visible(p.name))
            if pngs:
                characters.append(pngs)
    if not characters:
        raise DataError(f"{folder}: empty image folder: no character images found; expected "
                        f"{folder}/<alphabet>/<character>/*.png (torchvision's Omniglot layout)")
    return characters


def load_omniglot(request: LoadRequest, name: str, binary: bool) -> Dataset:
    """Omniglot at 28x28; y = character index over both sets (background first, 1623 in all)."""
    found = _find_omniglot(request)
    sets = {split: _omniglot_characters(found / folder) for split, folder in OMNIGLOT_SETS.items()}
    paths = {split: [p for character in chars for p in character] for split, chars in sets.items()}
    protocol = {"side": OMNIGLOT_SIDE, "resample": "bilinear", "ink": 255, "label": "character over both sets"}
    key = fingerprint(protocol, listing(found, paths["train"] + paths["test"]))

    def build() -> dict:
        announce("omniglot", len(paths["train"]) + len(paths["test"]), found)
        x = decode_all(paths["train"] + paths["test"], _pixels, (OMNIGLOT_SIDE, OMNIGLOT_SIDE))
        labels = [c for c, character in enumerate(sets["train"] + sets["test"]) for _ in character]
        y = torch.tensor(labels, dtype=torch.int64)
        n = len(paths["train"])
        return {"train_x": x[:n].unsqueeze(1).clone(), "train_y": y[:n].clone(),
                "test_x": x[n:].unsqueeze(1).clone(), "test_y": y[n:].clone(),
                "num_classes": len(sets["train"]) + len(sets["test"])}

    data = dataset_from_blob(name, cached_images("omniglot", found, "omniglot-28x28-v1", key, build))
    if binary:
        data = dataclasses.replace(data, train=_binarise(data.train), test=_binarise(data.test))
    return data


def _binarise(split: DataSplit) -> DataSplit:
    """A fixed threshold at 0.5 (pixel value >= 128 -> 255, else 0): the same bits in every run."""
    return DataSplit((split.x >= 128).to(torch.uint8) * 255, split.y)
