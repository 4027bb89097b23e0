"""User-facing errors.

Every error a user can cause (bad name, bad grid file, missing data, broken plugin) is a
:class:`BenchmarkError`. Its message names the problem *and* the fix; the command line
prints it without a traceback and exits with status 2.
"""

from __future__ import annotations

import unicodedata
from typing import Any


def first_line(text: Any, limit: int = 200) -> str:
    """The first non-blank-stripped line of ``text`` (None: ""), cut to ``limit`` characters
    with an ellipsis: an error message short enough for a log line or a table cell."""
    text = str(text or "").strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


class BenchmarkError(Exception):
    """An error caused by the user's input or environment, with an actionable message."""


class UnknownNameError(BenchmarkError, KeyError):
    """A method, data set, grid, preset or likelihood name that is not registered."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(self.valid) or '(none)'}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class GridError(BenchmarkError):
    """A grid file that cannot be parsed or holds an invalid field."""


def check_grid_name(name: str) -> str:
    """``name`` when it can be the grid's folder under the results, else a :class:`GridError`
    naming what is wrong with it (empty, ``.`` or ``..``, a path separator, a control character)."""
    problem = ("is empty" if not name else "is '.' or '..'" if name in (".", "..")
               else "holds a path separator" if "/" in name or "\\" in name
               else "holds a control character" if any(unicodedata.category(c) == "Cc" for c in name) else None)
    if problem is None:
        return name
    raise GridError(f"grid name {name!r} {problem}, and a grid's name is its folder under the results: "
                    "rename the grid file (e.g. my-grid.toml) or name a grid of `list grids`")


class DataError(BenchmarkError):
    """A data set that is missing or malformed on disk."""


class PluginError(BenchmarkError):
    """A method plugin file that fails to import or breaks the plugin contract."""


class PackagingError(BenchmarkError):
    """A file the package ships (built-in grids, methods, report templates) is missing: an
    incomplete install, not the user's input."""


class DivergedError(Exception):
    """Training produced a non-finite loss (not a user error: the run is recorded `diverged`)."""

    def __init__(self, epoch: int, step: int, parts: dict[str, float]):
        self.epoch, self.step, self.parts = epoch, step, parts
        super().__init__(f"non-finite loss at epoch {epoch}, step {step}: {parts}")
