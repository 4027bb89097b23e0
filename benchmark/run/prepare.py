"""What one ``run`` command does, decided once: the runs, their states, the device, the plan.

:func:`prepare` expands the grid (all of it for the plan; the ``--methods`` / ``--datasets``
selection for this command) and reads each run's state from its record once: ``done`` (an
``ok`` record of the current code), ``stale`` (an ``ok`` record of other code: redone, the old
record kept) or ``todo``. :func:`launch` resolves the device once, checks that the data of the
runs to do can be loaded, writes the plan beside the records and hands the runs to the
executor. A dry run stops after :func:`prepare` and writes nothing.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from ..config import RunConfig
from ..data.catalog import check_available
from ..device import resolve_device
from ..errors import BenchmarkError
from ..grid import load_grid
from .executor import GridSummary, Job, RunOptions, run_grid
from .plan import Plan, PlannedRun
from .progress import GridProgress
from .provenance import method_code
from .record import RunState, run_state
from .store import ResultStore


@dataclass
class Prepared:
    """A job, the state of each of its runs (by run id, after ``--force``) and the grid's plan."""

    job: Job
    states: dict[str, RunState]
    source: str  # where the runs come from (the grid file), for messages
    plan: Plan | None = None

    def header(self) -> str:
        """The line that opens a ``run``: how many runs, how many done, stale and to run."""
        job, stale = self.job, sum(state == "stale" for state in self.states.values())
        stale_text = (f" ({stale} stale: ok records made by other code, rerun and kept in "
                      f"{job.store.superseded_dir()}/; --keep-stale accepts them)" if stale else "")
        return (f"grid {job.name} ({self.source}): {len(job.runs)} runs, {len(job.runs) - len(job.todo)} already done "
                f"(skipped), {len(job.todo)} to run{stale_text} -> {job.store.dir}")

    def listing(self) -> list[str]:
        """The dry run's lines: runs per data set and method, then one line per run with its state."""
        per_pair = collections.Counter((r.dataset.name, r.method) for r in self.job.runs)
        lines = [f"{dataset:>18} {method:<14} {count} runs" for (dataset, method), count in sorted(per_pair.items())]
        return lines + [f"{self.states[r.run_id]:<5} {r.run_id}  {r.label()}" for r in self.job.runs]


def prepare_runs(name: str, runs: list[RunConfig], store: ResultStore, *, force: bool = False,
                 keep_stale: bool = False, source: str = "") -> Prepared:
    """Prepare ``runs`` (of grid ``name``) against the records in ``store``; ``force`` turns
    ``done`` into ``todo``."""
    code_keys = {method: method_code(method)["key"] for method in {r.method for r in runs}}
    states: dict[str, RunState] = {r.run_id: run_state(store.read(r.run_id), code_keys[r.method], keep_stale)
                                   for r in runs}
    if force:
        states = {run_id: "todo" if state == "done" else state for run_id, state in states.items()}
    todo = [r for r in runs if states[r.run_id] != "done"]
    return Prepared(Job(name, store, runs, todo, code_keys, force, keep_stale), states, source)


def prepare(grid_name: str, results: str, *, methods: list[str] | None = None, datasets: list[str] | None = None,
            seeds: list[int] | None = None, epochs: int | None = None, force: bool = False,
            keep_stale: bool = False) -> Prepared:
    """The runs a command selects from grid ``grid_name`` (a named grid or a TOML file), with the
    grid's whole plan, against the records under ``results``."""
    grid = load_grid(grid_name)
    runs = grid.expand(methods=methods, datasets=datasets, seeds=seeds, epochs=epochs)
    planned = grid.runs(seeds, epochs)
    if not runs:
        raise BenchmarkError(f"grid {grid.name!r} has no runs left after the --methods/--datasets filters")
    prepared = prepare_runs(grid.name, runs, ResultStore(results, grid.name), force=force, keep_stale=keep_stale,
                            source=str(grid.path))
    prepared.plan = Plan(grid.name, grid.description, grid.source,
                         tuple(PlannedRun.of(run.config, run.named) for run in planned), headline=grid.headline(planned))
    return prepared


def launch(prepared: Prepared, options: RunOptions, progress: GridProgress | None = None) -> GridSummary:
    """Resolve the device (a missing GPU is an error), check the data of the runs to do, write the
    plan, then execute the runs (see :func:`benchmark.run.executor.run_grid`)."""
    device = resolve_device(options.device)
    job = prepared.job
    for name in sorted({r.dataset.name for r in job.todo}):
        check_available(name, data_root=options.data_root, download=options.download)
    if prepared.plan is not None:
        job.store.write_plan(prepared.plan)
    return run_grid(job, options, device, progress)
