"""Run a list of configs and store each record as it finishes: in this process or on local
worker processes (joblib/loky). Finished ``ok`` runs are skipped unless forced."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .config import RunConfig
from .progress import GridProgress
from .runner import RunResult, execute
from .store import ResultStore


@dataclass(frozen=True)
class RunOptions:
    """How to run (never part of a run's identity)."""

    device: str = "auto"
    data_root: str | None = None
    download: bool = False
    workers: int = 1


@dataclass
class GridSummary:
    total: int
    skipped: int
    counts: dict[str, int] = field(default_factory=dict)


def pending_runs(runs: list[RunConfig], store: ResultStore, force: bool) -> list[RunConfig]:
    """Runs without an ``ok`` record (all runs when ``force``)."""
    return list(runs) if force else [r for r in runs if store.status(r.run_id) != "ok"]


def _execute_in_worker(config: RunConfig, options: RunOptions) -> RunResult:
    """Entry point of a worker process: share the CPU cores fairly, then run."""
    import torch

    if options.device != "cuda":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // options.workers))
    return execute(config, device=options.device, data_root=options.data_root, download=options.download,
                   log=lambda line: print(line, flush=True))


def _results(todo: list[RunConfig], options: RunOptions, log: Callable[[str], None]) -> Iterator[RunResult]:
    if options.workers <= 1:
        for config in todo:
            yield execute(config, device=options.device, data_root=options.data_root,
                          download=options.download, log=log)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=options.workers, backend="loky", return_as="generator_unordered")
    yield from parallel(delayed(_execute_in_worker)(config, options) for config in todo)


def run_grid(grid_name: str, runs: list[RunConfig], store: ResultStore, options: RunOptions,
             force: bool = False, progress: GridProgress | None = None) -> GridSummary:
    """Execute the pending ``runs`` and write each record (and the table) as it arrives."""
    todo = pending_runs(runs, store, force)
    progress = progress or GridProgress(len(todo))
    summary = GridSummary(total=len(runs), skipped=len(runs) - len(todo))
    try:
        for record, images in _results(todo, options, progress.log):
            record["grid"] = grid_name
            store.write(record, images)
            store.write_table()
            progress.finished(record)
    finally:
        progress.close()
        summary.counts = dict(progress.counts)
    return summary
