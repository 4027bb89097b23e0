"""What one ``run`` command does, decided once: the runs, their states, the device, the plan.

:func:`prepare` expands the grid (all of it for the plan; the ``--methods`` / ``--datasets``
selection for this command), refuses a results folder that holds another grid of the same name
(:func:`check_same_grid`) and reads each run's state from its record once: ``done`` (an ``ok``
record of the current code), ``stale`` (an ``ok`` record of other code: redone, the old record
kept) or ``todo``; files in ``runs/`` that are no readable record are listed as warnings.
:func:`launch` checks the data root and that the results folder can be written, resolves the
device once, checks that the data of the runs to do can be loaded and hold the examples their
settings ask for (:func:`check_sizes`), claims the folder (checks again
that it holds no other grid and writes the plan, under one lock) and hands the runs to the
executor. A dry run stops after :func:`prepare` and writes
nothing.
"""

from __future__ import annotations

import collections
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.catalog import check_available, full_splits, published_sizes
from ..data.roots import check_data_root
from ..device import resolve_device
from ..discovery import METHODS
from ..errors import BenchmarkError, UnknownNameError, first_line
from ..ml.precision import NEEDS_CUDA
from .grid import load_grid, size_problems
from ..execution.executor import GridSummary, Job, RunOptions, run_grid
from ..results.plan import Plan, PlannedRun
from ..execution.progress import GridProgress
from .code_key import changed_units, run_codes, setting_identity
from ..results.record import Record, RunKeys, RunState, run_state, utc_now
from ..results.store import ResultStore


@dataclass
class Prepared:
    """A job, the state of each of its runs (by run id, after ``--force``) and the grid's plan."""

    job: Job
    states: dict[str, RunState]
    source: str  # where the runs come from (the grid file), for messages
    plan: Plan | None = None
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file in runs/, why) of non-records
    # run id of a stale run -> the definitions whose code changed since its record (empty: the
    # record predates the per-definition code key, record version < 5)
    why_stale: dict[str, list[str]] = field(default_factory=dict)
    # records in runs/ of settings the grid no longer holds (an edited grid file): moved to
    # superseded/ when the plan is written, never deleted
    retired: list[str] = field(default_factory=list)
    results_before: int = 0  # runs with a record (superseded ones included) when prepared

    def claim(self, current: Plan | None) -> Plan:
        """The plan to write over ``current`` (the folder's plan now, read under its lock), or a
        :class:`BenchmarkError` when ``current`` is another grid's: what makes the folder this grid's."""
        assert self.plan is not None
        check_same_grid(self.plan, current, self.job.store)
        return self.plan.declaration(current, self.results_before, utc_now())

    def header(self) -> str:
        """The line that opens a ``run``: how many runs, how many done, stale and to run."""
        job, stale = self.job, sum(state == "stale" for state in self.states.values())
        stale_text = (f" ({stale} stale: ok records made by other code, rerun and kept in "
                      f"{job.store.superseded_dir()}/; --keep-stale accepts them)" if stale else "")
        return (f"grid {job.name} ({self.source}): {len(job.runs)} runs, {len(job.runs) - len(job.todo)} already done "
                f"(skipped), {len(job.todo)} to run{stale_text} -> {job.store.dir}")

    def retired_text(self) -> list[str]:
        """The line saying which records leave ``runs/`` because their setting left the grid."""
        if not self.retired:
            return []
        return [f"{len(self.retired)} record(s) in {self.job.store.runs_dir}/ are of settings this grid file no "
                f"longer holds: {'they would be' if self.plan is None else 'moved'} to "
                f"{self.job.store.superseded_dir()}/ when the plan is written ({', '.join(self.retired[:4])}"
                f"{', ...' if len(self.retired) > 4 else ''})"]

    def warnings(self) -> list[str]:
        """One line per unreadable record of a run of this command (it is rerun, the file
        replaced), and one naming the other files in ``runs/`` that are no record (ignored)."""
        runs = dict(zip(self.job.run_ids, self.job.runs))
        where = self.job.store.runs_dir
        lines, others = [], []
        for name, why in self.unreadable:
            run = runs.get(Path(name).stem)
            why = first_line(why, 160)
            if run is not None:
                lines.append(f"warning: the record of {Path(name).stem} ({run.label()}) in {where}/ cannot be read "
                             f"({why}): the run is rerun and the file replaced")
            else:
                others.append(f"{name} ({why})")
        if others:
            lines.append(f"warning: {len(others)} file(s) in {where}/ are no readable run record and are ignored "
                         f"(also by runs.csv / summary.csv): {'; '.join(others)}")
        return lines

    def listing(self) -> list[str]:
        """The dry run's lines: runs per data set and method, one line per run with its state, then
        why the stale ones are stale."""
        per_pair = collections.Counter((r.dataset.name, r.method) for r in self.job.runs)
        lines = [f"{dataset:>18} {method:<14} {count} runs" for (dataset, method), count in sorted(per_pair.items())]
        labels = {run.run_id: run.label for run in self.plan.runs} if self.plan is not None else {}
        lines += [f"{self.states[run_id]:<5} {run_id}  {labels.get(run_id) or run.label()}"
                  for run_id, run in zip(self.job.run_ids, self.job.runs)]
        return lines + self.stale_summary()

    def stale_summary(self) -> list[str]:
        """One line per changed definition: how many stale runs it makes stale (a run counts
        under each definition that changed for it)."""
        stale = [run_id for run_id, state in self.states.items() if state == "stale"]
        if not stale:
            return []
        counts = collections.Counter(label for run_id in stale for label in self.why_stale.get(run_id) or
                                     ["(recorded before code keys covered the core: record version < 5)"])
        return [f"stale: {len(stale)} runs; the code that changed since their records (runs affected):"] + [
            f"  {label}  ({n})" for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def prepare_runs(name: str, runs: list[RunConfig], store: ResultStore, *, force: bool = False,
                 keep_stale: bool = False, source: str = "", run_ids: list[str] | None = None) -> Prepared:
    """Prepare ``runs`` (of grid ``name``; ``run_ids``: their ids, when known already) against the
    records in ``store``; ``force`` turns ``done`` into ``todo``."""
    ids = run_ids if run_ids is not None else [r.run_id for r in runs]
    alone, packed = dict(zip(ids, run_codes(runs))), dict(zip(ids, run_codes(runs, packed=True)))
    keys = {run_id: RunKeys(alone[run_id]["key"], packed[run_id]["key"]) for run_id in ids}
    records, unreadable = store.scan()
    by_id = {record.run_id: record for record in records}
    states: dict[str, RunState] = {run_id: run_state(by_id.get(run_id), keys[run_id], keep_stale) for run_id in ids}
    why_stale = {run_id: changed_units(record.code["units"], (packed if record.pack else alone)[run_id]["units"])
                 if (record := by_id[run_id]).code and record.code.get("units") else []
                 for run_id, state in states.items() if state == "stale"}
    if force:
        states = {run_id: "todo" if state == "done" else state for run_id, state in states.items()}
    todo = [run for run_id, run in zip(ids, runs) if states[run_id] != "done"]
    return Prepared(Job(name, store, runs, ids, todo, keys, force, keep_stale), states, source,
                    unreadable=unreadable, why_stale=why_stale)


def check_same_grid(plan: Plan, current: Plan | None, store: ResultStore) -> None:
    """Refuse results of another grid with the same name: the folder's ``current`` plan (written by
    an earlier ``run``) names another grid file *and* other runs than ``plan``. The same file
    edited, or another file holding the same runs (e.g. moved), is the same grid. A folder without
    a plan (results from before plans) cannot be told apart and is accepted."""
    if current is None or current.source == plan.source or {r.run_id for r in current.runs} == {r.run_id for r in plan.runs}:
        return
    relative = not Path(current.source).is_absolute() and not current.source.startswith("benchmark/grids/")
    if relative and not plan.source.startswith("benchmark/grids/"):
        return  # an older plan named a user's grid file relative to where `run` was started: cannot tell
    raise BenchmarkError(f"{store.dir}/ holds the results of grid file {current.source}, and {plan.source} is another "
                         f"grid with the same name {plan.grid!r}: rename the file (its results then go to "
                         f"{store.dir.parent}/<new name>/) or pass --results DIR to keep them apart")


def prepare(grid_name: str, results: str, *, methods: list[str] | None = None, datasets: list[str] | None = None,
            seeds: list[int] | None = None, epochs: int | None = None, force: bool = False,
            keep_stale: bool = False, overrides: list[str] | tuple[str, ...] = ()) -> Prepared:
    """The runs a command selects from grid ``grid_name`` (a named grid or a TOML file, with the
    ``--set KEY=VALUE`` ``overrides`` applied), with the grid's whole plan, against the records
    under ``results``."""
    grid = load_grid(grid_name, overrides)
    grid.check_selection(methods, datasets)
    planned = grid.runs(seeds, epochs)
    runs = grid.select(planned, methods, datasets)
    if not runs:
        raise BenchmarkError(f"grid {grid.name!r} has no runs left after the --methods/--datasets filters "
                             f"(its methods: {', '.join(sorted({r.config.method for r in planned}))}; data sets: "
                             f"{', '.join(sorted({r.config.dataset.name for r in planned}))})")
    store = ResultStore(results, grid.name)
    methods = {m: {"guarantees": list(METHODS[m].guarantees)} for m in sorted({run.config.method for run in planned})
               if METHODS[m].guarantees}
    plan = Plan(grid.name, grid.description, grid.source,
                tuple(PlannedRun.of(run.config, run.named, run.run_id) for run in planned),
                headline=grid.headline(planned), methods=methods, overrides=tuple(o.to_dict() for o in grid.overrides))
    current = store.read_plan()
    check_same_grid(plan, current, store)
    prepared = prepare_runs(grid.name, [run.config for run in runs], store, force=force, keep_stale=keep_stale,
                            source=str(grid.path), run_ids=[run.run_id for run in runs])
    records = store.scan()[0]
    prepared.retired = retired_records(records, [run.config for run in planned])
    prepared.results_before = len({r.run_id for r in records} | store.superseded_run_ids())
    prepared.plan = plan.declaration(current, prepared.results_before, utc_now())
    return prepared


def setting_key(config: RunConfig) -> str:
    """What identifies a run's setting whatever its seed and epochs (``run --seeds`` / ``--epochs``)."""
    values = config.identity()
    values.pop("seed")
    values["train"] = {k: v for k, v in values["train"].items() if k != "epochs"}
    return json.dumps(values, sort_keys=True)


def retired_records(records: list[Record], planned: list[RunConfig]) -> list[str]:
    """Run ids of ``records`` whose setting none of the ``planned`` runs has (seeds and epochs
    aside): left by an edit of the grid file. Records of methods this process does not know are
    kept (a plugin may be missing)."""
    if not records:
        return []
    # one key per setting: a setting's runs hold the same objects besides their seed
    settings = {setting_key(config) for config in {setting_identity(c): c for c in planned}.values()}
    retired = []
    for record in records:
        try:
            key = setting_key(record.config)
        except UnknownNameError:
            continue
        if key not in settings:
            retired.append(record.run_id)
    return sorted(retired)


def check_sizes(runs: list[RunConfig], options: RunOptions) -> None:
    """Refuse runs that ask for more examples than the copy of their data set that was found
    holds (a data root may hold fewer than the published splits the grid was checked against,
    :func:`benchmark.planning.grid.size_problems`): the splits are in this process's cache
    since :func:`check_available`, so their sizes cost nothing."""
    settings = {setting_identity(config): config for config in runs}.values()  # seeds aside
    for config in sorted(settings, key=lambda c: c.dataset.name):
        full = full_splits(config.dataset.name, options.data_root, 0, options.download)
        problems = size_problems(config, len(full.train), len(full.test), full.valid is not None)
        if problems:
            setting, problem = problems[0]
            published = published_sizes(config.dataset.name)
            raise BenchmarkError(f"{problem} (the copy of {config.dataset.name} that was found holds {len(full.train)} "
                                 f"training / {len(full.test)} test examples; published: {published[0]} / "
                                 f"{published[1]}; run {config.run_id}, {config.label()})")


def check_precision(runs: list[RunConfig], device: torch.device) -> None:
    """Refuse runs whose ``train.precision`` the device lacks (TF32 is an NVIDIA GPU format)."""
    for config in runs:
        if config.train.precision in NEEDS_CUDA and device.type != "cuda":
            raise BenchmarkError(f"train.precision = {config.train.precision!r} needs a CUDA GPU and this run trains on "
                                 f"{device.type} ({config.run_id}, {config.label()}): use fp32 or bf16 there, or "
                                 "--device cuda")


def launch(prepared: Prepared, options: RunOptions, progress: GridProgress | None = None) -> GridSummary:
    """Check the data root and that the results can be written (nothing in the way of a file or
    folder), remove the temporary files of interrupted commands, resolve the device (a missing
    GPU is an error), check the data of the runs to do (loadable, large enough), claim the folder for this grid (its plan,
    :meth:`Prepared.claim`), then execute the runs (see :func:`benchmark.execution.executor.run_grid`)."""
    job = prepared.job
    check_data_root(options.data_root)
    job.store.check_writable([r.run_id for r in job.todo])
    removed = job.store.remove_orphans()
    if removed:
        print(f"removed {removed} temporary file(s) that interrupted commands left in {job.store.dir}/", file=sys.stderr)
    device = resolve_device(options.device)
    check_precision(job.todo, device)
    for name in sorted({r.dataset.name for r in job.todo}):
        check_available(name, data_root=options.data_root, download=options.download)
    check_sizes(job.todo, options)
    if prepared.plan is not None:
        prepared.plan = job.store.claim(prepared.claim)
        for run_id in prepared.retired:
            job.store.supersede(run_id)
    return run_grid(job, options, device, progress)
