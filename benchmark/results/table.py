"""The runs table and its summary, always rebuilt from the records.

``runs.csv``: one row per record (ids, every hyperparameter as ``hp.*``, model / train / data /
eval settings, status details, every scalar metric as recorded, and ``invalid``: the metrics
whose value its estimator's own check rejects, names joined by ``;``, empty when none).
``summary.csv``: per setting, over the seeds of its ``ok`` runs, ``<metric>_mean`` and
``<metric>_std`` of the valid values, ``<metric>_invalid`` (how many of those runs had that
metric invalid, left out of the mean and std; a column for every summarised metric, 0 when
none) and ``n`` (the ok runs). The report groups settings with the same columns
(:func:`setting_columns`).
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
from collections import Counter
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .record import Record

ID_COLUMNS = ["run_id", "status", "method", "dataset", "seed"]
SUMMARY_METRICS = ["au", "au_count", "kl", "mi", "nll", "rec", "neg_elbo", "mse", "wall_time_s"]
SETTING_PREFIXES = ("hp.", "model.", "train.", "dataset.", "eval.")
CSV_OPTIONS: dict[str, Any] = {"index": False, "float_format": "%.6g"}  # how both tables are written


def invalid_values(record: Record) -> dict[str, str]:
    """Metric -> why its value is invalid: flagged in the record (``invalid``, from its
    estimator's own checks), or not finite (records from before the flag flag nothing)."""
    found = {k: "not finite" for k, v in (record.metrics or {}).items()
             if isinstance(v, float) and not math.isfinite(v)}
    return dict(sorted({**found, **(record.invalid or {})}.items()))


def record_row(r: Record) -> dict[str, Any]:
    """A record's row of ``runs.csv`` (:func:`records_table`), as a dict in column order."""
    config = r.config_dict()  # as written: the settings the file lacked left out
    row: dict[str, Any] = {"run_id": r.run_id, "status": r.status, "method": config["method"],
                           "dataset": config["dataset"]["name"], "seed": config["seed"]}
    row.update({f"hp.{k}": _cell(v) for k, v in config["hyperparameters"].items()})
    for section in ("model", "train", "dataset", "eval"):
        for key, value in sorted(config[section].items()):  # in the order of the file (its keys sorted)
            if key == "options":
                row.update({f"model.{k}": _cell(v) for k, v in value.items()})
            elif key != "name":
                row[f"{section}.{key}"] = _cell(value)
    row["error"] = r.error.message if r.error else None
    row["diverged_epoch"] = r.diverged_epoch
    row["wall_time_s"] = r.wall_time_s
    if r.resumed is not None:  # (records from before it have no column, so their tables stay the same)
        row["resumed"] = r.resumed
    row["device"] = r.device
    row.update({k: v for k, v in (r.metrics or {}).items() if isinstance(v, (int, float)) or v is None})
    row["invalid"] = ";".join(invalid_values(r))
    return row


def records_table(records: Iterable[Record]) -> pd.DataFrame:
    """One row per record: ids, every hyperparameter (``hp.*``), model / train / data settings,
    status details, every scalar metric and the invalid ones (``invalid``, joined by ``;``)."""
    return rows_table(record_row(r) for r in records)


def rows_table(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The runs table of rows (:func:`record_row`) given in the order of their records' file
    names: columns in the order they first appear, rows sorted by run id."""
    table = pd.DataFrame(list(rows))
    if table.empty:
        return pd.DataFrame(columns=ID_COLUMNS)
    return table.sort_values("run_id", kind="stable").reset_index(drop=True)


def tables_csv(records: Iterable[Record]) -> tuple[str, str]:
    """``runs.csv`` and ``summary.csv`` rebuilt from every record (in the order of their file
    names): the reference :class:`IncrementalTables` matches byte for byte."""
    table = records_table(records)
    return table.to_csv(**CSV_OPTIONS), summary_table(table).to_csv(**CSV_OPTIONS)


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def setting_columns(table: pd.DataFrame) -> list[str]:
    """Columns that identify a setting: method, data set and every config column but the seed."""
    return _setting_columns(table.columns)


def _setting_columns(columns: Iterable[str]) -> list[str]:
    return ["dataset", "method"] + [c for c in columns if c.startswith(SETTING_PREFIXES)]


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per setting, over the seeds of its ``ok`` runs: ``<metric>_mean`` and ``<metric>_std`` of
    the valid values, ``<metric>_invalid`` (the runs whose value is invalid, left out) and ``n``."""
    ok = runs[runs["status"] == "ok"] if "status" in runs else runs
    if ok.empty:
        return pd.DataFrame(columns=["dataset", "method", "n"])
    keys = setting_columns(ok)
    present = [m for m in SUMMARY_METRICS if m in ok]
    flagged = (ok["invalid"] if "invalid" in ok else pd.Series("", index=ok.index)).fillna("").str.split(";")
    invalid = pd.DataFrame({m: flagged.map(lambda names, m=m: m in names) for m in present}, index=ok.index)
    valid = ok[keys].join(ok[present].mask(invalid))
    grouped = valid.groupby(keys, dropna=False, sort=True)
    stats = grouped[present].agg(["mean", "std"])
    counts = ok[keys].join(invalid).groupby(keys, dropna=False, sort=True)[present].sum()
    columns = {}
    for metric in present:
        columns[f"{metric}_mean"], columns[f"{metric}_std"] = stats[(metric, "mean")], stats[(metric, "std")]
        columns[f"{metric}_invalid"] = counts[metric].astype(int)
    out = pd.DataFrame(columns, index=stats.index)
    out["n"] = grouped.size()
    return out.reset_index()


def summary_markdown(summary: pd.DataFrame) -> str:
    """Markdown: data set, method, the hyperparameters swept for that method, the other settings
    that differ between rows, and AU / KL / MI / rec as mean ± std over seeds (n)."""
    if summary.empty or "au_mean" not in summary:
        return ""
    varying = [c for c in summary.columns if c.startswith(SETTING_PREFIXES[1:]) and summary[c].nunique(dropna=False) > 1]
    hp_columns = [c for c in summary.columns if c.startswith("hp.")]
    swept = {key: [c for c in hp_columns if group[c].nunique(dropna=True) > 1]
             for key, group in summary.groupby(["dataset", "method"])}
    lines = ["| " + " | ".join(["dataset", "method", "setting", *varying, "AU", "KL", "MI", "rec", "n"]) + " |"]
    lines.append("|" + "---|" * (len(varying) + 8))
    for _, row in summary.iterrows():
        setting = ", ".join(f"{c[3:]}={_cell_text(row[c])}" for c in swept[(row["dataset"], row["method"])])
        cells = [row["dataset"], row["method"], setting, *(_cell_text(row[c]) for c in varying)]
        cells += [_mean_std(row, m) for m in ("au", "kl", "mi", "rec")] + [int(row["n"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _cell_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _mean_std(row: pd.Series, metric: str) -> str:
    """``mean ± std`` of the valid values, and how many were invalid (left out)."""
    mean, std, invalid = row[f"{metric}_mean"], row[f"{metric}_std"], int(row[f"{metric}_invalid"])
    text = "invalid" if pd.isna(mean) and invalid else f"{mean:.3g}" + ("" if pd.isna(std) else f" ± {std:.2g}")
    return text + (f" ({invalid} invalid)" if invalid else "")


# --- The tables kept up to date row by row ------------------------------------------------------
#
# A full rebuild costs time in proportion to the records (parse every one, build both frames, and
# summary_table's groupby over ~100 setting columns alone costs a few hundred ms), so over a grid
# run from empty it grows with the square of the runs. IncrementalTables keeps every row, every
# row's line of runs.csv and every setting's line of summary.csv, and after a change recomputes
# only the lines of the changed rows and of their settings. What makes a line depend on the other
# rows is the table's schema: the column order (each column where it first appears, going
# through the rows by file name) and each column's dtype, which pandas infers from the kinds of
# value the column holds (int, float, str, bool, None, missing...); for the summary also the kinds
# of each setting column's values among the ok runs (the dtype of the result's keys is inferred
# from them) and the order of the settings. A line is written as pandas writes it: each value as
# its column's dtype has pandas format it, through a csv writer set up as pandas sets up its own;
# a setting's mean and std come from pandas' groupby kernels, on that setting's rows alone. A
# change of schema rebuilds both files with the reference code from the rows kept (no record
# parsed) and checks every line and the order of the rows and settings computed here against that
# rebuild; where they disagree (a kind of value this code does not know, settings it cannot order)
# the tables are rebuilt in full every time, until the schema changes again.

class _Missing:
    """A missing or NA setting value in a setting's key (one object, so keys compare equal)."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "NA"


NA = _Missing()
ABSENT = "absent"  # the kind of a column a row does not have
_INT64 = 2 ** 63
_SAMPLE = {"none": None, "str": "s", "float": 0.5, "negzero": -0.0, "nan": math.nan, "bool": True, "int": 0,
           "negint": -1, "uint": _INT64, "bigint": 2 * _INT64, "negbigint": -_INT64 - 1}
_NA_KINDS = frozenset({"none", "nan", ABSENT})
# Kinds whose values can be equal across kinds (True == 1 == 1.0) but print differently.
_NUMBER_CLASS = {"bool": "bool", "int": "int", "negint": "int", "uint": "int", "bigint": "int", "negbigint": "int",
                 "float": "float", "negzero": "float"}
Key = tuple[Any, ...]  # a setting: its value in each setting column (NA: none)


def value_kind(value: Any) -> str:
    """The kind of a row's value, as far as pandas' dtype inference tells them apart ("other"
    for a type a row never holds: the tables are then rebuilt in full)."""
    kind = type(value)
    if value is None:
        return "none"
    if kind is str:
        return "str"
    if kind is float:
        return "nan" if value != value else "negzero" if value == 0 and math.copysign(1, value) < 0 else "float"
    if kind is bool:
        return "bool"
    if kind is int:
        if 0 <= value < _INT64:
            return "int"
        if -_INT64 <= value < 0:
            return "negint"
        return "uint" if _INT64 <= value < 2 * _INT64 else "bigint" if value > 0 else "negbigint"
    return "other"


_DTYPES: dict[frozenset[str], Any] = {}


def kinds_dtype(kinds: frozenset[str]) -> Any:
    """The dtype pandas gives a column of the runs table that holds values of these kinds."""
    if kinds not in _DTYPES:
        rows = [{} if kind == ABSENT else {0: _SAMPLE[kind]} for kind in sorted(kinds)]
        _DTYPES[kinds] = pd.DataFrame(rows, columns=[0])[0].dtype
    return _DTYPES[kinds]


def _is_na(value: Any) -> bool:
    return value is None or value is NA or value is pd.NA or (isinstance(value, float) and value != value)


def _cell_writer(dtype: Any) -> Any:
    """How ``to_csv(float_format="%.6g")`` writes a value of a column of ``dtype`` (a row's value
    or NA): the string, or the object the csv writer turns into one."""
    if dtype.kind == "f":
        return lambda v: "" if _is_na(v) else "%.6g" % float(v)
    if dtype.kind in "iub":
        return str
    return lambda v: "" if _is_na(v) else v  # str, object: the value itself


class _Lines:
    """Records of CSV as pandas' ``to_csv`` writes them (its csv writer's settings)."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n", delimiter=",", quotechar='"',
                                 quoting=csv.QUOTE_MINIMAL, doublequote=True, escapechar=None)

    def __call__(self, fields: list[Any]) -> str:
        self.buffer.seek(0)
        self.buffer.truncate()
        self.writer.writerow(fields)
        return self.buffer.getvalue()


def csv_records(text: str) -> list[str]:
    """The records of CSV ``text``, each with its line end (a quoted value may hold a newline);
    raises ValueError when ``text`` does not end a record."""
    records, pending, odd = [], [], False
    pieces = text.split("\n")
    if pieces[-1]:
        raise ValueError("the CSV text does not end with a line end")
    for piece in pieces[:-1]:
        pending.append(piece)
        odd ^= piece.count('"') % 2 == 1
        if not odd:
            records.append("\n".join(pending) + "\n")
            pending = []
    if pending:
        raise ValueError("the CSV text ends inside a quoted value")
    return records


def _file_order(run_id: str) -> str:
    """The sort key of a record's file name (the runs table takes its columns in this order)."""
    return run_id + ".json"


class _Rebuild(Exception):
    """The incremental lines cannot be had here: rebuild the table in full."""


class IncrementalTables:
    """``runs.csv`` and ``summary.csv`` of a changing set of rows (:func:`record_row`), kept
    byte for byte what :func:`tables_csv` writes, at a cost per change that does not grow with
    the rows kept (but for changes of the tables' schema: a new column, a new kind of value in one).

    :meth:`update` takes the rows changed since the last call (run id -> row, None: removed) and
    returns both files' text. ``stats`` counts the full and incremental updates of each table (and
    ``*_disagree``: full rebuilds whose check found the incremental bookkeeping wrong)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.ids: list[str] = []  # sorted
        self.ok: set[str] = set()
        self.count: dict[str, int] = {}  # column -> rows that have it
        self.kinds: dict[str, Counter[str]] = {}  # column -> kinds of its values -> rows
        self.ok_count: dict[str, int] = {}  # the same over the ok rows
        self.ok_kinds: dict[str, Counter[str]] = {}
        self.first: dict[str, tuple[str, int]] = {}  # column -> (first file name that has it, its place there)
        self.schema: tuple[Any, ...] | None = None  # (columns, dtypes, kinds) of `lines`
        self._writers: list[Any] = []  # per column: how its values are written (_cell_writer)
        self.header = ""
        self.lines: dict[str, str] | None = None  # run id -> its line of runs.csv
        self.summary_schema: tuple[Any, ...] | None = None  # what `summary_lines` were made for
        self.summary_header = ""
        self.summary_dtypes: list[Any] = []  # of the summary's setting columns
        self.summary_lines: dict[Key, str] | None = None  # setting -> its line
        self.members: dict[Key, list[str]] = {}  # setting -> its ok run ids, sorted
        self.settings: list[Key] = []  # in summary.csv's order
        # setting columns whose NA sorts where it first appears (see _order): place in the key ->
        # value -> its ok run ids (sorted); and -> value -> whether it first appears before NA
        self.appear: dict[int, dict[Any, list[str]]] = {}
        self.before: dict[int, dict[Any, bool]] = {}
        self.stats: Counter[str] = Counter()
        self._frame: pd.DataFrame | None = None  # the whole runs table, when this update built it
        self._write = _Lines()

    # -- bookkeeping --------------------------------------------------------------------------

    def _add(self, run_id: str, row: dict[str, Any]) -> None:
        ok = row.get("status") == "ok"
        name = _file_order(run_id)
        for place, (column, value) in enumerate(row.items()):
            kind = value_kind(value)
            self.count[column] = self.count.get(column, 0) + 1
            self.kinds.setdefault(column, Counter())[kind] += 1
            if ok:
                self.ok_count[column] = self.ok_count.get(column, 0) + 1
                self.ok_kinds.setdefault(column, Counter())[kind] += 1
            if column not in self.first or (name, place) < self.first[column]:
                self.first[column] = (name, place)
        self.rows[run_id] = row
        if ok:
            self.ok.add(run_id)
        bisect.insort(self.ids, run_id)

    def _remove(self, run_id: str, dirty: dict[str, str]) -> dict[str, Any]:
        row = self.rows.pop(run_id)
        ok = run_id in self.ok
        self.ok.discard(run_id)
        del self.ids[bisect.bisect_left(self.ids, run_id)]
        name = _file_order(run_id)
        for column, value in row.items():
            kind = value_kind(value)
            for count, kinds, counted in ((self.count, self.kinds, True), (self.ok_count, self.ok_kinds, ok)):
                if counted:
                    count[column] -= 1
                    kinds[column][kind] -= 1
                    if not kinds[column][kind]:
                        del kinds[column][kind]
                    if not count[column]:
                        del count[column], kinds[column]
            if self.first.get(column, ("",))[0] == name:
                del self.first[column]
                dirty[column] = name
        return row

    def _settle_first(self, dirty: dict[str, str]) -> None:
        """Find again where the columns whose first row went first appear now."""
        for column, name in dirty.items():
            if column not in self.count:
                self.first.pop(column, None)
                continue
            again = self.rows.get(name[:-len(".json")])
            if again is not None and column in again:  # the same file, changed: still the first
                place = (name, list(again).index(column))
                self.first[column] = min(self.first.get(column, place), place)
            else:
                self.first[column] = min((_file_order(run_id), list(row).index(column))
                                         for run_id, row in self.rows.items() if column in row)

    def _kindset(self, column: str, ok: bool = False) -> frozenset[str]:
        kinds, count, rows = (self.ok_kinds, self.ok_count, len(self.ok)) if ok else (self.kinds, self.count, len(self.rows))
        found = frozenset(kinds.get(column, ()))
        return found | {ABSENT} if count.get(column, 0) < rows else found

    def _schema(self) -> tuple[Any, ...] | None:
        """(columns, dtypes, kinds) of the runs table now; None when a value is of a kind this
        code does not know."""
        columns = tuple(sorted(self.count, key=self.first.__getitem__))
        kindsets = tuple(self._kindset(c) for c in columns)
        if any("other" in kinds for kinds in kindsets):
            return None
        return columns, tuple(kinds_dtype(kinds) for kinds in kindsets), kindsets

    # -- the update ---------------------------------------------------------------------------

    def update(self, changes: dict[str, dict[str, Any] | None]) -> tuple[str, str]:
        """Apply ``changes`` (run id -> its new row, or None: no row any more); returns the text
        of ``runs.csv`` and of ``summary.csv``."""
        self._frame = None
        dirty: dict[str, str] = {}
        before = {run_id: self._remove(run_id, dirty) for run_id in changes if run_id in self.rows}
        for run_id, row in changes.items():
            if row is not None:
                self._add(run_id, row)
        self._settle_first(dirty)
        schema = self._schema()
        if schema is None or schema != self.schema or self.lines is None:
            runs = self._full_runs(schema)
        else:
            runs = self._runs_incrementally(changes)
        summary_schema = self._summary_schema()
        if summary_schema is None or summary_schema != self.summary_schema or self.summary_lines is None:
            summary = self._full_summary(summary_schema)
        else:
            try:
                summary = self._summary_incrementally(changes, before)
            except _Rebuild:
                self.stats["summary_fallback"] += 1
                summary = self._full_summary(None)
        self._frame = None
        return runs, summary

    def _table(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = rows_table(self.rows[run_id] for run_id in sorted(self.rows, key=_file_order))
        return self._frame

    def _line(self, row: dict[str, Any]) -> str:
        assert self.schema is not None
        return self._write([write(row.get(c, NA)) for c, write in zip(self.schema[0], self._writers)])

    def _full_runs(self, schema: tuple[Any, ...] | None) -> str:
        self.stats["runs_full"] += 1
        table = self._table()
        text = table.to_csv(**CSV_OPTIONS)
        self.schema, self.lines = None, None
        if schema is None or not self.rows:
            return text
        records = csv_records(text)
        self.schema, self._writers = schema, [_cell_writer(dtype) for dtype in schema[1]]
        lines = {run_id: self._line(self.rows[run_id]) for run_id in self.ids}
        if (tuple(table.columns) == schema[0] and tuple(table.dtypes) == schema[1] and records[0] == self._header()
                and records[1:] == [lines[run_id] for run_id in self.ids]):
            self.header, self.lines = records[0], lines
        else:  # the bookkeeping disagrees with pandas: rebuild every time (correct, slower)
            self.stats["runs_disagree"] += 1
            self.schema = None
        return text

    def _header(self) -> str:
        assert self.schema is not None
        return self._write(list(self.schema[0]))

    def _runs_incrementally(self, changes: dict[str, dict[str, Any] | None]) -> str:
        assert self.lines is not None
        self.stats["runs_incremental"] += 1
        for run_id in changes:
            self.lines.pop(run_id, None)
            if run_id in self.rows:
                self.lines[run_id] = self._line(self.rows[run_id])
        return self.header + "".join([self.lines[run_id] for run_id in self.ids])

    # -- the summary --------------------------------------------------------------------------

    def _summary_schema(self) -> tuple[Any, ...] | None:
        """What the summary's lines depend on beyond their settings' rows; None when it cannot be
        kept incrementally (no ok run, a summarised metric that is not a number column, setting
        values that pandas prints as another setting's)."""
        if self.schema is None or not self.ok:
            return None
        dtypes = dict(zip(self.schema[0], self.schema[1]))
        keys = tuple(_setting_columns(self.schema[0]))
        present = tuple(m for m in SUMMARY_METRICS if m in dtypes)
        if any(dtypes[m].kind not in "if" for m in present) or dtypes["invalid"].kind not in "O":
            return None
        ok_kinds = tuple(self._kindset(c, ok=True) for c in keys)
        if ok_kinds[0] != frozenset({"str"}):
            return None
        ambiguous = []
        for place, (column, kinds) in enumerate(zip(keys, ok_kinds)):
            classes = {_NUMBER_CLASS[k] for k in kinds if k in _NUMBER_CLASS}
            if "negzero" in kinds or (dtypes[column].kind == "O" and len(classes) > 1):
                # pandas groups equal values (True, 1 and 1.0; 0.0 and -0.0) as one and prints the
                # first it meets, which may be another setting's: the lines depend on other settings
                return None
            if dtypes[column].kind == "O" and classes and "str" not in kinds and kinds & _NA_KINDS:
                ambiguous.append(place)
        return self.schema, keys, present, ok_kinds, tuple(ambiguous)

    def _key(self, row: dict[str, Any], keys: tuple[str, ...], floats: frozenset[str]) -> Key:
        """A row's setting, as the summary groups it (values of float columns as floats)."""
        key = []
        for column in keys:
            value = row.get(column)
            key.append(NA if _is_na(value) else float(value) if column in floats else value)
        return tuple(key)

    def _floats(self, keys: tuple[str, ...]) -> frozenset[str]:
        assert self.schema is not None
        dtypes = dict(zip(self.schema[0], self.schema[1]))
        return frozenset(c for c in keys if dtypes[c].kind == "f")

    @staticmethod
    def _keys_of(summary: pd.DataFrame, keys: tuple[str, ...]) -> list[Key]:
        columns = [summary[c].tolist() for c in keys]
        return [tuple(NA if _is_na(v) else v for v in values) for values in zip(*columns)]

    def _order(self, key: Key) -> tuple[tuple[Any, ...], ...]:
        """A setting's place among the settings, as pandas sorts them: by each value in turn,
        numbers (and bools) before strings before NA; but in a column of numbers or bools and NA
        of dtype object, NA compares equal to every value and numpy's sort (an insertion sort of
        the values in the order they first appear, up to 16 values) leaves it between the values
        that first appear before it and those after it."""
        order = []
        for place, value in enumerate(key):
            before = self.before.get(place)
            if before is not None:
                order.append((1,) if value is NA else (0 if before[value] else 2, value))
            else:
                order.append((2,) if value is NA else (1, value) if isinstance(value, str) else (0, value))
        return tuple(order)

    def _placements(self) -> dict[int, dict[Any, bool]]:
        """Where each value of the ambiguous columns first appears: before NA or after it."""
        placements = {}
        for place, values in self.appear.items():
            if len(values) > 16:  # numpy's sort is no insertion sort any more
                raise _Rebuild
            first_na = values[NA][0] if NA in values else None
            placements[place] = {v: first_na is None or ids[0] < first_na for v, ids in values.items() if v is not NA}
        return placements

    def _setting_lines(self, settings: list[Key]) -> dict[Key, str]:
        """The lines of ``settings``: their keys, then per summarised metric the mean and std of
        the valid values (pandas' groupby kernels, over the setting's rows in run id order) and
        how many were invalid, then n."""
        assert self.summary_schema is not None
        present = list(self.summary_schema[2])
        labels, values, invalid = [], [], []
        for label, key in enumerate(settings):
            for run_id in self.members[key]:
                row = self.rows[run_id]
                flagged = (row.get("invalid") or "").split(";")
                labels.append(label)
                invalid.append([m in flagged for m in present])
                values.append([math.nan if bad or _is_na(row.get(m)) else float(row[m])
                               for m, bad in zip(present, invalid[-1])])
        frame = pd.DataFrame(values, columns=present, dtype="float64")
        frame.insert(0, "_setting", labels)
        grouped = frame.groupby("_setting", sort=True)[present]  # summary_table's kernels: agg(["mean", "std"])
        mean, std = grouped.mean(), grouped.std()
        if mean.index.tolist() != list(range(len(settings))):
            raise _Rebuild
        means, stds = {m: mean[m].tolist() for m in present}, {m: std[m].tolist() for m in present}
        key_writers = [_cell_writer(dtype) for dtype in self.summary_dtypes]
        lines, start = {}, 0
        for label, key in enumerate(settings):
            n = len(self.members[key])
            fields = [write(value) for write, value in zip(key_writers, key)]
            for j, m in enumerate(present):
                fields += [_cell_writer(np.dtype("float64"))(means[m][label]),
                           _cell_writer(np.dtype("float64"))(stds[m][label]),
                           str(sum(flags[j] for flags in invalid[start:start + n]))]
            lines[key] = self._write(fields + [str(n)])
            start += n
        return lines

    def _full_summary(self, summary_schema: tuple[Any, ...] | None) -> str:
        self.stats["summary_full"] += 1
        summary = summary_table(self._table() if self.ok else rows_table([]))  # no ok run: the empty summary
        text = summary.to_csv(**CSV_OPTIONS)
        self.summary_schema, self.summary_lines = None, None
        if summary_schema is None:
            return text
        keys, ambiguous = summary_schema[1], summary_schema[4]
        floats = self._floats(keys)
        self.members, self.appear = {}, {place: {} for place in ambiguous}
        for run_id in self.ids:
            if run_id in self.ok:
                key = self._key(self.rows[run_id], keys, floats)
                self.members.setdefault(key, []).append(run_id)
                for place in ambiguous:
                    self.appear[place].setdefault(key[place], []).append(run_id)
        records = csv_records(text)
        try:
            self.before = self._placements()
            settings = sorted(self.members, key=self._order)
            agree = self._keys_of(summary, keys) == settings
            if agree:
                self.summary_schema, self.summary_dtypes = summary_schema, list(summary.dtypes)[:len(keys)]
                lines = self._setting_lines(settings)
                agree = records[0] == self._write(list(summary.columns)) and records[1:] == [lines[k] for k in settings]
        except (TypeError, _Rebuild):  # values that do not compare; too many to place
            agree = False
        if agree:
            self.summary_header, self.summary_lines, self.settings = records[0], lines, settings
        else:  # the bookkeeping disagrees with pandas: rebuild every time (correct, slower)
            self.stats["summary_disagree"] += 1
            self.summary_schema = None
        return text

    def _summary_incrementally(self, changes: dict[str, dict[str, Any] | None],
                               before: dict[str, dict[str, Any]]) -> str:
        assert self.summary_schema is not None and self.summary_lines is not None
        self.stats["summary_incremental"] += 1
        keys, ambiguous = self.summary_schema[1], self.summary_schema[4]
        floats = self._floats(keys)
        touched = set()
        for run_id in changes:
            old = before.get(run_id)
            if old is not None and old.get("status") == "ok":
                key = self._key(old, keys, floats)
                self.members[key].remove(run_id)
                touched.add(key)
                for place in ambiguous:
                    self.appear[place][key[place]].remove(run_id)
                    if not self.appear[place][key[place]]:
                        del self.appear[place][key[place]]
            if run_id in self.ok:
                key = self._key(self.rows[run_id], keys, floats)
                bisect.insort(self.members.setdefault(key, []), run_id)
                touched.add(key)
                for place in ambiguous:
                    bisect.insort(self.appear[place].setdefault(key[place], []), run_id)
        for key in [k for k in touched if not self.members[k]]:
            del self.members[key], self.summary_lines[key]
            self.settings.remove(key)
            touched.discard(key)
        placements = self._placements()
        if placements != self.before:  # values now first appear on the other side of NA: sort again
            self.stats["summary_resorted"] += 1
            self.before = placements
            self.settings.sort(key=self._order)
        for key in touched:
            if key not in self.summary_lines:
                try:
                    self.settings.insert(bisect.bisect(self.settings, self._order(key), key=self._order), key)
                except TypeError:
                    raise _Rebuild from None
        if touched:
            self.summary_lines.update(self._setting_lines(sorted(touched, key=self._order)))
        return self.summary_header + "".join([self.summary_lines[k] for k in self.settings])
