"""Valid values of settings and hyperparameters, declared on their dataclass fields.

A field declares its valid range as interval text (``"[0, inf)"``, ``"(0, 1]"``) and its doc in
its metadata (:data:`RANGE`, :data:`DOC`; :func:`benchmark.config.setting`, the one way to declare
a setting of a grid's ``[train]``, ``[model]`` (and the architectures' options), ``[eval]``,
``[[datasets]]`` or a method's hyperparameter); a ``Literal[...]`` annotation lists its valid
choices. :func:`field_problems` checks both when a grid is loaded and when a method is built.
A range applies to each item of a list; ``None`` (an unset optional setting) is always valid.
Every number must also be finite, whatever its range, also inside lists and tables.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

RANGE = "range"  # dataclass field metadata key: the field's valid interval as text
DOC = "doc"  # dataclass field metadata key: what the field does, one line

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


def choices(tp: Any) -> tuple[Any, ...] | None:
    """The values a ``Literal[...]`` annotation (optionally ``| None``) allows, or None for
    any other type."""
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [choices(a) for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1 and inner[0] is not None:
            return inner[0]
    return None


def is_numeric(tp: Any) -> bool:
    """Whether a range can apply to type ``tp``: int or float, optional, or a list of them."""
    if tp in (int, float):
        return True
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType, list, tuple):
        return bool(args) and all(is_numeric(a) for a in args)
    return False


def field_problems(config: Any) -> list[tuple[str, str]]:
    """(field name, why) for each field of the dataclass instance ``config`` whose value lies
    outside its declared range, holds a non-finite float (see :func:`problem`) or is not one
    of its ``Literal`` choices."""
    hints = typing.get_type_hints(type(config))
    found = []
    for f in dataclasses.fields(config):
        value, allowed = getattr(config, f.name), choices(hints.get(f.name))
        if allowed is not None and value is not None and value not in allowed:
            found.append((f.name, f"{value!r} is not a valid choice; valid: {', '.join(map(repr, allowed))}"))
            continue
        why = problem(value, declared_range(f))
        if why is not None:
            found.append((f.name, why))
    return found


def declaration_problems(cls: type, doc_required: bool = False) -> list[str]:
    """What is wrong with how the dataclass ``cls`` declares its fields: a range on a field
    that is not numeric, a range that does not parse, or (``doc_required``) a field without a
    doc. Each entry names the field and the fix."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        where = f"{cls.__name__}.{f.name}"
        text = f.metadata.get(RANGE)
        if text is not None:
            try:
                Interval.parse(text)
            except ValueError as exc:
                found.append(f"{where}: {exc}")
            if not is_numeric(hints[f.name]):
                found.append(f"{where}: a range on a field of type {hints[f.name]} (not a number); "
                             f"drop the range, or annotate the field int or float")
        if doc_required and not f.metadata.get(DOC):
            found.append(f'{where} has no doc; declare it as {f.name}: T = setting(default, "[low, high)", '
                         f'doc="what it does")')
    return found
