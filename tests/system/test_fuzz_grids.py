"""Fuzzing grid files: whatever a grid file holds, loading it and ``run --dry-run`` either accept it
or stop with one ``error: ...`` line (exit 2), never a traceback.

Grid files are generated with random values *and* random types for every setting: the top level,
``[train]``, ``[model]`` with every architecture's options, ``[eval]``, ``[[datasets]]`` (with their
overrides) and every method's hyperparameters, the settings read from the config dataclasses
and the method registry (new settings and plugins are fuzzed as they come). The examples are
derandomized, so CI sees the same ones every time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import tomllib
import types
import typing
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.cli import main
from benchmark.config import DatasetConfig, EvalConfig, ModelConfig, TrainConfig
from benchmark.discovery import METHODS
from benchmark.errors import BenchmarkError
from benchmark.planning.grid import load_grid
from benchmark.ml.likelihoods import LIKELIHOODS
from benchmark.ml.archs import ARCHS
from benchmark.ml.schedules import SCHEDULES

EXAMPLES = 150

# --- TOML text ---------------------------------------------------------------------------------


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """One TOML value (inline), for the types tomllib reads back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_text(grid: dict[str, Any]) -> str:
    """Top-level values, then the tables, then the arrays of tables (a section given as a value of
    another type stays a top-level value)."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in grid.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(e, dict) for e in v))]
    for key, value in grid.items():
        if isinstance(value, dict):
            lines += [f"[{toml_key(key)}]"] + [f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
    for key, value in grid.items():
        if isinstance(value, list) and value and all(isinstance(e, dict) for e in value):
            for entry in value:
                lines += [f"[[{toml_key(key)}]]"] + [f"{toml_key(k)} = {toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


# --- values ----------------------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x7f"), max_size=6)
SCALARS = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), TEXT,
                    st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)))
ANYTHING = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=2),
                        max_leaves=5)
EDGE_INTS = st.sampled_from([0, 1, 2, 3, -1, 2**63 - 1])
EDGE_FLOATS = st.sampled_from([0.0, 1e-3, 0.5, 1.0, 2.0, -1.0, float("nan"), float("inf"), -float("inf")])
OPTION_NAMES = sorted({f.name for cls in (SCHEDULES[k] for k in SCHEDULES.names()) for f in dataclasses.fields(cls)})


def typed(tp: Any) -> st.SearchStrategy:
    """Values of type ``tp`` (and near misses), edge values first."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return st.sampled_from([*args, "bogus", ""])
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(typed(a) for a in args if a is not type(None)))
    if origin in (list, tuple):
        return st.lists(typed(args[0]) if args else SCALARS, max_size=3)
    if tp is dict or origin is dict:  # e.g. a schedule's options
        return st.dictionaries(st.sampled_from(OPTION_NAMES) | TEXT, EDGE_FLOATS | EDGE_INTS | SCALARS, max_size=2)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return EDGE_INTS | st.integers(-5, 10**6)
    if tp is float:
        return EDGE_FLOATS | st.floats()
    if tp is str:
        return st.sampled_from(SCHEDULES.names() + ["bogus", ""]) | TEXT
    return ANYTHING


def good(tp: Any) -> st.SearchStrategy:
    """Values a grid may well hold, so that many examples get past the first field."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(good(a) for a in args if a is not type(None)))
    if origin in (list, tuple):
        return st.lists(good(args[0]) if args else st.integers(1, 8), max_size=2)
    if tp is dict or origin is dict:
        return st.sampled_from([{}, {"duration": 0.5}, {"start": 2.0}, {"cycles": 2, "ratio": 0.5}, {"center": 1.0}])
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(2, 6)
    if tp is float:
        return st.floats(0.01, 1.0)
    if tp is str:
        return st.sampled_from(SCHEDULES.names() + LIKELIHOODS.names())
    return SCALARS


def setting(tp: Any) -> st.SearchStrategy:
    """Mostly a plausible value, often a value of the right type that may be out of range, and
    now and then anything at all."""
    return st.integers(0, 9).flatmap(lambda i: good(tp) if i < 6 else typed(tp) if i < 9 else ANYTHING)


def rarely(draw) -> bool:
    return draw(st.integers(0, 15)) == 15


def section(fields: dict[str, Any]) -> st.SearchStrategy:
    """A table holding some of ``fields`` (name -> type) with fuzzed values, and now and then an
    unknown key."""
    names = sorted(fields)
    keys = st.lists(st.sampled_from(names), max_size=3, unique=True) if names else st.just([])
    table = keys.flatmap(lambda keys: st.fixed_dictionaries({k: setting(fields[k]) for k in keys}))
    return st.tuples(table, st.integers(0, 15), ANYTHING).map(
        lambda t: {**t[0], "unknown_setting": t[2]} if t[1] == 15 else t[0])


def hints(cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in typing.get_type_hints(cls).items() if k not in skip}


TRAIN = hints(TrainConfig)
EVAL = hints(EvalConfig)
MODEL = {**hints(ModelConfig, ("options",)), **{k: v for arch in ARCHS.names() for k, v in hints(ARCHS[arch]).items()}}
DATASET = hints(DatasetConfig, ("name",))
MODEL["arch"] = str


@st.composite
def model_table(draw) -> dict[str, Any]:
    table = draw(section(MODEL))
    if not rarely(draw):
        table["arch"] = draw(st.sampled_from(ARCHS.names()))
    return table


@st.composite
def dataset_entry(draw) -> dict[str, Any]:
    name = draw(setting(str)) if rarely(draw) else draw(st.sampled_from(["pinwheel", "chessboard", "fashion-mnist",
                                                                          "celeba"]))
    entry = {"name": name, **draw(section(DATASET))}
    if rarely(draw):
        entry["model"] = draw(model_table() | ANYTHING)
    if rarely(draw):
        entry["train"] = draw(section(TRAIN) | ANYTHING)
    return entry


@st.composite
def method_entry(draw) -> dict[str, Any]:
    name = draw(setting(str)) if rarely(draw) else draw(st.sampled_from([*METHODS.names(), "*"]))
    entry: dict[str, Any] = {"name": name}
    if name in METHODS.names():
        fields = hints(METHODS[name].Config)
        for key, value in draw(section(fields)).items():  # a list sweeps: sometimes a list of values
            entry[key] = draw(st.lists(setting(fields[key]), max_size=2)) if key in fields and rarely(draw) else value
    if rarely(draw):
        entry["train"] = draw(section(TRAIN) | ANYTHING)
    if rarely(draw):
        entry["model"] = draw(model_table() | ANYTHING)
    return entry


@st.composite
def grids(draw) -> dict[str, Any]:
    grid: dict[str, Any] = {}
    if draw(st.booleans()):
        grid["description"] = draw(ANYTHING if rarely(draw) else TEXT)
    if draw(st.booleans()):
        grid["seeds"] = draw(ANYTHING if rarely(draw) else st.lists(st.integers(0, 3), min_size=1, max_size=3))
    for key, table in (("train", section(TRAIN)), ("model", model_table()), ("eval", section(EVAL))):
        if draw(st.booleans()):
            grid[key] = draw(ANYTHING if rarely(draw) else table)
    grid["datasets"] = draw(ANYTHING if rarely(draw) else st.lists(dataset_entry(), min_size=1, max_size=2))
    grid["methods"] = draw(ANYTHING if rarely(draw) else st.lists(method_entry(), min_size=1, max_size=2))
    if rarely(draw):
        grid["colour"] = draw(ANYTHING)
    return grid


def one_line(message: str) -> bool:
    return "\n" not in message.strip() and "Traceback" not in message


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(grid=grids())
def test_any_grid_file_loads_or_is_one_error_line(grid, tmp_path, capsys):
    path = tmp_path / "fuzz.toml"
    text = toml_text(grid)
    tomllib.loads(text)  # the generator writes valid TOML: what is fuzzed is the grid, not the syntax
    path.write_text(text)
    try:
        load_grid(path).expand()
        accepted = True
    except BenchmarkError as exc:
        assert one_line(str(exc)), str(exc)
        accepted = False
    code = main(["run", "--grid", str(path), "--dry-run", "--no-estimate", "--results", str(tmp_path / "r")])
    _, err = capsys.readouterr()
    if accepted:
        assert code == 0, err
    else:
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: grid file "), err
    assert not (tmp_path / "r").exists()
