"""Valid ranges of numeric settings, written as intervals: ``"[0, inf)"``, ``"(0, 1]"``.

A method plugin declares its hyperparameters' ranges as plain strings in the class attribute
``ranges`` (``ranges = {"beta": "[0, inf)"}``): no import needed, shown by ``list methods`` and
checked when a grid is loaded. The settings of a grid's ``[train]``, ``[model]`` (and the
architectures' options), ``[eval]`` and ``[[datasets]]`` declare theirs in their dataclass fields'
metadata (``RANGE``, see :func:`benchmark.config.setting`), checked by :func:`field_problems`.
A range applies to each item of a list; ``None`` (an unset optional setting) is always valid.
Every number must also be finite, whatever its range, also inside lists and tables.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

RANGE = "range"  # dataclass field metadata key: the field's valid interval as text

_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")


@dataclass(frozen=True)
class Interval:
    """The numbers between ``low`` and ``high`` (each included when ``*_closed``); infinite
    bounds stand for unbounded sides."""

    low: float
    high: float
    low_closed: bool = True
    high_closed: bool = True

    @classmethod
    def parse(cls, text: str) -> "Interval":
        """``"[0, inf)"``-style text; raises ValueError for anything else."""
        match = _INTERVAL.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"range {text!r} is not an interval like \"[0, inf)\" or \"(0, 1]\"")
        left, low, high, right = match.groups()
        try:
            lo, hi = float(low), float(high)
        except ValueError:
            raise ValueError(f"range {text!r}: bounds must be numbers or inf") from None
        if math.isnan(lo) or math.isnan(hi) or lo > hi:
            raise ValueError(f"range {text!r} is empty")
        return cls(lo, hi, left == "[", right == "]")

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def __str__(self) -> str:
        def bound(x: float) -> str:
            return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"

        return f"{'[' if self.low_closed else '('}{bound(self.low)}, {bound(self.high)}{']' if self.high_closed else ')'}"


def problem(value: object, interval: Interval | None) -> str | None:
    """Why ``value`` is not valid in ``interval`` (None: it is). Lists are checked item by item;
    without an interval (and inside tables) only finiteness is asked of floats; None passes."""
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            why = problem(item, interval)
            if why is not None:
                return f"item {index}: {why}" if len(value) > 1 else why
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            why = problem(item, None)
            if why is not None:
                return f"{key}: {why}"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if value is not None and interval is not None and value not in interval:
        return f"{value!r} is outside the valid range {interval}"
    return None


def declared_range(f: dataclasses.Field) -> Interval | None:
    """The interval a dataclass field declares in its metadata (:data:`RANGE`), or None."""
    text = f.metadata.get(RANGE)
    return Interval.parse(text) if text is not None else None


def field_problems(config: Any, ranges: Mapping[str, Interval] | None = None) -> list[tuple[str, str]]:
    """(field name, why) for each field of the dataclass instance ``config`` whose value lies
    outside its range or holds a non-finite float (see :func:`problem`). The ranges are the
    fields' declared ones, or those of ``ranges`` (field name -> interval, e.g. a method's
    :meth:`~benchmark.ml.method.Method.hyperparameter_ranges`) when given."""
    found = []
    for f in dataclasses.fields(config):
        interval = declared_range(f) if ranges is None else ranges.get(f.name)
        why = problem(getattr(config, f.name), interval)
        if why is not None:
            found.append((f.name, why))
    return found
