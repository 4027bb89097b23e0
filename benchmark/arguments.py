"""Value types of the command lines (``python -m benchmark`` and the tools): lists of names,
seeds and positive counts, each raising ``argparse.ArgumentTypeError`` with the accepted forms."""

from __future__ import annotations

import argparse
from typing import Callable

from .execution.checkpoint_every import CheckpointEvery

MAX_SEED, MAX_SEEDS = 2**31 - 1, 10_000


def names(text: str) -> list[str]:
    """``a,b`` -> ["a", "b"] (blanks dropped)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def seeds(text: str) -> list[int]:
    """``0,1,2`` or ``0-4`` (inclusive range, first <= last) or a mix: ``0-2,7``; at least one."""
    found: list[int] = []
    try:
        for part in names(text):
            lo, sep, hi = part.partition("-")
            first, last = int(lo), int(hi) if sep else int(lo)
            if first > last:
                raise argparse.ArgumentTypeError(f"seed range {part!r} is empty: write it first-last with "
                                                 f"first <= last, e.g. {last}-{first}")
            if last > MAX_SEED or last - first + 1 + len(found) > MAX_SEEDS:
                raise argparse.ArgumentTypeError(f"seeds go from 0 to {MAX_SEED}, at most {MAX_SEEDS} of them; "
                                                 f"got {text!r}")
            found += range(first, last + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must look like 0,1,2 or 0-4, got {text!r}") from None
    if not found:
        raise argparse.ArgumentTypeError(f"no seeds in {text!r}; give e.g. 0,1,2 or 0-4")
    return found


def positive(text: str) -> int:
    """An integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count(low: int, high: int) -> Callable[[str], int]:
    """The type of an integer option from ``low`` to ``high``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def pack_size(text: str) -> int | str:
    """``auto`` or an integer from 1 to 4096 (the most runs trained together as one model)."""
    if text.strip() == "auto":
        return "auto"
    try:
        return count(1, 4096)(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"--pack takes a count of runs (e.g. 8) or auto: {exc}") from None


def gib(text: str) -> float:
    """A memory size in GiB: a number above 0 and at most 16384 (e.g. ``80``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GiB (e.g. 80)") from None
    if not 0 < value <= 16384:
        raise argparse.ArgumentTypeError(f"{text} GiB is outside (0, 16384]: give the GPU's memory, e.g. 80")
    return value


def checkpoint_every(text: str) -> CheckpointEvery:
    """``E`` (epochs) or ``Mm`` (minutes): :meth:`CheckpointEvery.parse`."""
    try:
        return CheckpointEvery.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
