"""A grid's pre-registered headline: the settings its report leads with, declared before any result.

In a grid file, an optional top-level ``headline`` names, per method, the hyperparameter values
of its headline setting(s)::

    headline = {"lr-vae" = {alpha_T = 1.0, beta = 0.2}, "beta-vae" = {beta = 0.2}}
    headline = {"lr-vae" = [{alpha_T = 1.0, beta = 0.2}, {alpha_T = 1.0, beta = 1.0}]}
    headline = [{method = "lr-vae", alpha_T = 1.0, beta = 0.2}]      # the same as a list

A method it does not name is in the headline where it has a single setting. The report never
chooses a headline by a metric (that would select on the test split). The entries go into
``plan.json``; each must name a method of the grid, its hyperparameters, and values that match
at least one of the grid's runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from ..config import RunConfig
from ..discovery import METHODS
from ..errors import GridError

Entry = dict[str, Any]  # {"method": name, "hyperparameters": {name: value}}


def _entries(value: Any, error: Callable[[str, str], GridError]) -> list[tuple[str, str, dict[str, Any]]]:
    """(field, method, hyperparameter values) per declared setting, in file order."""
    out = []
    if isinstance(value, dict):
        for method, spec in value.items():
            specs = spec if isinstance(spec, list) else [spec]
            for i, one in enumerate(specs):
                where = f"headline.{method}" + (f"[{i}]" if isinstance(spec, list) else "")
                if not isinstance(one, dict):
                    raise error(where, f"expected a table of hyperparameter values, got {one!r}")
                out.append((where, str(method), dict(one)))
    elif isinstance(value, list):
        for i, one in enumerate(value):
            where = f"headline[{i}]"
            if not isinstance(one, dict) or not isinstance(one.get("method"), str):
                raise error(where, f'expected a table with `method = "..."` and hyperparameter values, got {one!r}')
            out.append((where, one["method"], {k: v for k, v in one.items() if k != "method"}))
    else:
        raise error("headline", 'expected a table, e.g. headline = {"lr-vae" = {alpha_T = 1.0, beta = 0.2}}, '
                                f"or a list of tables with `method`, got {value!r}")
    return out


def headline_entries(value: Any, runs: Sequence[RunConfig], error: Callable[[str, str], GridError]
                     ) -> tuple[Entry, ...]:
    """The validated ``headline`` of a grid (``value``: the TOML value, None when absent) against
    the grid's ``runs``; ``error(field, problem)`` builds the grid's error."""
    if value is None:
        return ()
    entries = []
    for where, method, values in _entries(value, error):
        mine = [r for r in runs if r.method == method]
        if not mine:
            grid_methods = ", ".join(sorted({r.method for r in runs}))
            raise error(where, f"method {method!r} is not in this grid; its methods: {grid_methods}")
        fields = {f.name for f in dataclasses.fields(METHODS[method].Config)}
        for key in values:
            if key not in fields:
                raise error(f"{where}.{key}", f"{method} has no hyperparameter {key!r}; valid: "
                                              f"{', '.join(sorted(fields)) or '(none)'}")
        if not any(all(r.hyperparameters.get(k) == v for k, v in values.items()) for r in mine):
            raise error(where, f"no run of {method} in this grid has {values}: the headline must be one of "
                               "the grid's settings")
        entries.append({"method": method, "hyperparameters": values})
    return tuple(entries)
