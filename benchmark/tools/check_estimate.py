"""Check the dry-run's compute estimate against real runs on this device.

    python -m benchmark.tools.check_estimate --grid full --datasets fashion-mnist,ffhq \\
        --methods vae,lr-vae,il-lid-vae --epochs 4 --train-size 6000 --test-size 1000 --parallel 4

takes one run (seed 0) of each kind of run in the selection (:func:`benchmark.tools.estimate.cost_key`
per data set: the shallow and the deep MLP of one data set are two kinds), optionally shortened
(``--epochs``) and cut to random subsets (``--train-size`` / ``--test-size``), estimates it with
:func:`benchmark.tools.estimate.estimate_compute` and then trains and evaluates it for real through the
grid runner, in a scratch results folder. It prints, per data set and method, the estimated and
measured seconds of training (``train_time_s`` of the records) and of the whole run
(``wall_time_s``: also loading, the per-epoch curves, the final evaluation and the metrics the
estimate leaves out), and writes them, ``eval_time_s`` too, as JSON with ``--out``.

``--parallel K`` runs the same runs again K at a time (K per GPU on a GPU, K worker processes
sharing the cores on a CPU) and reports the throughput against one at a time.

``--pack K`` takes K seeds (0..K-1) of each of those runs, estimates them as ``run --dry-run
--pack K`` does, then runs them one at a time and in packs of K (``run --pack K``), and reports
the estimated and measured training time of the packs and their speed against one at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..arguments import names, positive
from ..config import RunConfig
from ..data.catalog import check_available
from ..errors import BenchmarkError
from ..planning.grid import load_grid
from ..execution.executor import RunOptions
from ..planning.prepare import launch, prepare_runs
from ..results.record import Record
from ..results.store import ResultStore
from .estimate import DataShapes, cost_key, estimate_compute

MEASURED = ("train_time_s", "eval_time_s", "wall_time_s")


def representatives(runs: list[RunConfig], data_root: str | None = None) -> list[RunConfig]:
    """The first run of each (data set, method, cost kind) of ``runs``, in grid order."""
    shapes, seen, picked = DataShapes(data_root), set(), []
    for run in runs:
        key = (run.dataset.name, run.method, cost_key(run, shapes(run.dataset.name)[0]))
        if key not in seen:
            seen.add(key)
            picked.append(run)
    return picked


def cut(run: RunConfig, train_size: int | None, test_size: int | None) -> RunConfig:
    """``run`` on at most ``train_size`` / ``test_size`` examples (None: as it is), its batch and
    the examples its evaluation takes from the test split cut to fit (a run may not ask for more
    examples than its data hold)."""
    def smaller(current: int | None, cap: int | None) -> int | None:
        return current if cap is None else min(cap, current) if current else cap
    dataset = dataclasses.replace(run.dataset, train_size=smaller(run.dataset.train_size, train_size),
                                  test_size=smaller(run.dataset.test_size, test_size))
    train, evaluation = run.train, run.eval
    if train_size is not None:
        train = dataclasses.replace(train, batch_size=min(train.batch_size, dataset.train_size))
    if test_size is not None:
        n = dataset.test_size
        evaluation = dataclasses.replace(
            evaluation, nll_examples=min(evaluation.nll_examples, n), geometry_points=min(evaluation.geometry_points, n),
            noise_points=min(evaluation.noise_points, n), mi_batch_size=min(evaluation.mi_batch_size, n),
            mi_examples=(min(evaluation.mi_examples, n) if evaluation.mi_split == "test" and evaluation.mi_examples
                         else evaluation.mi_examples))
    return dataclasses.replace(run, dataset=dataset, train=train, eval=evaluation)


def _timed_grid(runs: list[RunConfig], results: Path, options: RunOptions) -> tuple[float, list[Record]]:
    """Wall seconds of running ``runs`` into a fresh store under ``results``, and their records."""
    store = ResultStore(results, "check-estimate")
    start = time.perf_counter()
    launch(prepare_runs("check-estimate", runs, store, force=True), options)
    elapsed = time.perf_counter() - start
    records = [store.read(r.run_id) for r in runs]
    failed = [r for r in records if r is None or r.status != "ok"]
    if failed:
        details = "; ".join(f"{r.label}: {r.status} {r.error.message if r.error else ''}" if r else "no record" for r in failed)
        raise BenchmarkError(f"{len(failed)} of the runs did not finish ok, so there is nothing to compare: {details}")
    return elapsed, records  # type: ignore[return-value]


def check(runs: list[RunConfig], device: str, data_root: str | None, results: Path, parallel: int = 1) -> dict[str, Any]:
    """Estimate, then run, ``runs``; the comparison per data set and method (see the module
    docstring) and, with ``parallel`` > 1, the throughput of running them ``parallel`` at a time."""
    estimate = estimate_compute(runs, device, data_root=data_root)
    sequential = RunOptions(device=device, data_root=data_root, retries=0, checkpoint_every=0)
    elapsed, records = _timed_grid(runs, results / "one-at-a-time", sequential)
    measured: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: dict.fromkeys(MEASURED, 0.0))
    for record in records:
        row = measured[(record.config.dataset.name, record.config.method)]
        for key in MEASURED:
            row[key] += getattr(record, key)
    rows = []
    for r in estimate.rows:
        got = measured[(r.dataset, r.method)]
        rows.append({"dataset": r.dataset, "method": r.method, "runs": r.runs, "steps": r.steps,
                     "estimated_train_s": r.train_hours * 3600, "estimated_eval_s": r.eval_hours * 3600,
                     "estimated_s": r.hours * 3600, **got})
    out: dict[str, Any] = {
        "device": estimate.device, "records_device": sorted({r.device for r in records}),
        "runs": [r.label() + f" [{r.model.arch}] {r.run_id}" for r in runs],
        "kinds": [dataclasses.asdict(k) for k in estimate.kinds],
        "rows": rows, "one_at_a_time_s": elapsed,
    }
    totals = {key: sum(row[key] for row in rows) for key in ("estimated_train_s", "estimated_eval_s", "estimated_s", *MEASURED)}
    out["totals"] = totals | {"train_ratio": totals["train_time_s"] / totals["estimated_train_s"],
                              "wall_ratio": totals["wall_time_s"] / totals["estimated_s"]}
    if parallel > 1:
        packed = dataclasses.replace(sequential, workers=parallel, runs_per_gpu=parallel)
        packed_s, _ = _timed_grid(runs, results / f"parallel-{parallel}", packed)
        out["parallel"] = {"k": parallel, "elapsed_s": packed_s, "throughput_vs_one_at_a_time": elapsed / packed_s}
    return out


def check_packing(runs: list[RunConfig], device: str, data_root: str | None, results: Path, pack: int) -> dict[str, Any]:
    """Seeds 0..``pack``-1 of each of ``runs``: the packed estimate, and the wall and training
    seconds of running them one at a time and in packs of ``pack``."""
    seeded = list({c.run_id: c for c in (dataclasses.replace(r, seed=s) for r in runs for s in range(pack))}.values())
    estimate = estimate_compute(seeded, device, data_root=data_root, pack=pack)
    single = RunOptions(device=device, data_root=data_root, retries=0, checkpoint_every=0)
    one_s, _ = _timed_grid(seeded, results / "pack-1", single)
    packed_s, records = _timed_grid(seeded, results / f"pack-{pack}", dataclasses.replace(single, pack=pack))
    estimated = sum(r.train_hours for r in estimate.rows) * 3600
    measured = sum(r.train_time_s for r in records)  # each packed record holds its share of its pack's
    return {"k": pack, "runs": len(seeded), "one_at_a_time_s": one_s, "packed_s": packed_s,
            "speed_vs_one_at_a_time": one_s / packed_s, "estimated_packed_train_s": estimated,
            "measured_packed_train_s": measured, "train_ratio": measured / estimated,
            "packed_records": sum(1 for r in records if r.pack)}


def format_check(result: dict[str, Any]) -> str:
    """The comparison as a table (seconds; ratio = measured / estimated)."""
    lines = [f"estimate vs real runs on {result['device']} ({len(result['runs'])} runs, seconds):",
             f"{'dataset':>14} {'method':<11} {'runs':>4} {'steps':>7} {'est train':>9} {'train':>8} {'ratio':>5} "
             f"{'est eval':>8} {'rest':>7} {'est all':>8} {'wall':>8} {'ratio':>5}"]
    for r in result["rows"] + [{"dataset": "total", "method": "", "runs": len(result["runs"]), "steps": 0,
                                **result["totals"]}]:
        lines.append(f"{r['dataset']:>14} {r['method']:<11} {r['runs']:>4} {r['steps'] or '':>7} "
                     f"{r['estimated_train_s']:9.1f} {r['train_time_s']:8.1f} "
                     f"{r['train_time_s'] / r['estimated_train_s']:5.2f} {r['estimated_eval_s']:8.1f} "
                     f"{r['wall_time_s'] - r['train_time_s']:7.1f} {r['estimated_s']:8.1f} {r['wall_time_s']:8.1f} "
                     f"{r['wall_time_s'] / r['estimated_s']:5.2f}")
    lines.append("est eval: the estimated curve points and final evaluation; rest: the measured wall time less training "
                 "(loading, curves, final evaluation with the MI and decoder-geometry metrics the estimate leaves out)")
    lines.append(f"one at a time: {result['one_at_a_time_s']:.1f} s for the {len(result['runs'])} runs")
    if "parallel" in result:
        p = result["parallel"]
        lines.append(f"{p['k']} at a time: {p['elapsed_s']:.1f} s, {p['throughput_vs_one_at_a_time']:.2f}x the throughput")
    if "packing" in result:
        p = result["packing"]
        lines.append(f"packs of {p['k']} ({p['runs']} runs, seeds 0-{p['k'] - 1}): {p['packed_s']:.1f} s against "
                     f"{p['one_at_a_time_s']:.1f} s one at a time ({p['speed_vs_one_at_a_time']:.2f}x); training "
                     f"{p['measured_packed_train_s']:.1f} s against {p['estimated_packed_train_s']:.1f} s estimated "
                     f"(ratio {p['train_ratio']:.2f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.tools.check_estimate", description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default="full", help="grid name or TOML file (default: full)")
    parser.add_argument("--datasets", type=names, help="only these data sets (comma-separated)")
    parser.add_argument("--methods", type=names, help="only these methods (comma-separated)")
    parser.add_argument("--epochs", type=positive, help="override the number of epochs")
    parser.add_argument("--train-size", type=positive, help="at most this many training examples per run")
    parser.add_argument("--test-size", type=positive, help="at most this many test examples per run")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--data-root", help="folder holding the data sets (also $BENCHMARK_DATA)")
    parser.add_argument("--parallel", type=positive, default=1, metavar="K", help="also run them K at a time")
    parser.add_argument("--pack", type=positive, default=1, metavar="K",
                        help="also run K seeds of each one at a time and in packs of K (run --pack K)")
    parser.add_argument("--results", help="keep the scratch records here (default: a temporary folder)")
    parser.add_argument("--out", help="write the comparison as JSON here")
    args = parser.parse_args(argv)

    try:
        runs = load_grid(args.grid).expand(methods=args.methods, datasets=args.datasets, seeds=[0], epochs=args.epochs)
        runs = [cut(r, args.train_size, args.test_size) for r in representatives(runs, args.data_root)]
        if not runs:
            raise BenchmarkError(f"grid {args.grid!r} has no runs left after the --methods/--datasets filters")
        for name in sorted({r.dataset.name for r in runs}):
            check_available(name, data_root=args.data_root)  # a missing data set is named now, not per run
        with tempfile.TemporaryDirectory(prefix="check-estimate-") as scratch:
            result = check(runs, args.device, args.data_root, Path(args.results or scratch), args.parallel)
            if args.pack > 1:
                result["packing"] = check_packing(runs, args.device, args.data_root,
                                                  Path(args.results or scratch), args.pack)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(format_check(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
