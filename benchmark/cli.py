"""Command line: ``vae-bench`` / ``python -m benchmark {run,report,export,bench,list} ...`` (``--help`` on each).

It parses the arguments and makes one call per command into its stage: ``run`` prepares and
launches a grid (:mod:`benchmark.planning.prepare`), ``report`` builds the report
(:mod:`benchmark.report.build`), ``export`` writes the records into a tracker (:mod:`benchmark.export`), ``bench`` runs the
performance bench (:mod:`benchmark.tools.bench`), ``list`` shows what is registered.

Exit status: 0 when every run ended ``ok`` or ``diverged`` (a diverged run is a result), 1 when
some run failed, 2 for a mistake in the input (one ``error: ...`` line on stderr, before anything
trains), 130 when interrupted by Ctrl-C or SIGTERM (finished runs are stored, worker processes
stopped; on a Ray cluster, its tasks cancelled). A record (or its images, or its --keep-model
model) that cannot be stored after training (disk full, ...) fails its run, starts no other,
and ends with one ``error: ...`` line naming the file and the fix (status 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import signal
import sys
import threading
import typing
from pathlib import Path

from .arguments import checkpoint_every, count, gib, names, pack_size, seeds
from .discovery import claim_reporting
from .execution.checkpoint_every import CheckpointEvery
from .errors import BenchmarkError, check_grid_name

DEFAULT_GRID = "quick"


def program() -> str:
    """How the user started the tool: the console script ``vae-bench`` or ``python -m benchmark``."""
    return "vae-bench" if Path(sys.argv[0]).name == "vae-bench" else "python -m benchmark"


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: ``error: ...`` on stderr, exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=program(),
        description="Benchmark of posterior-collapse remedies in VAEs: train grids of methods x data sets "
                    "x hyperparameters x seeds and store self-describing results.")
    parser.add_argument("--plugins", metavar="DIR|FILE", action="append", default=[],
                        help="extra folder of method plugin files, or one plugin .py file (repeatable; also "
                             "$BENCHMARK_PLUGINS)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train a grid and store its results",
                         description="Train every run of a grid that has no ok record yet, writing one JSON "
                                     "record per run under RESULTS/GRID/runs/ and the tables runs.csv and "
                                     "summary.csv beside them.")
    run.add_argument("--grid", default=DEFAULT_GRID, metavar="NAME|PATH",
                     help=f"named grid (see `list grids`) or a grid TOML file (default: {DEFAULT_GRID})")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a grid setting (repeatable), checked as in the grid file: train.KEY, model.KEY, "
                          "eval.KEY, seeds, datasets.NAME.KEY, methods.NAME.KEY (e.g. train.lr=3e-4, "
                          "methods.lr-vae.alpha_T=0.4); VALUE is TOML; results go to RESULTS/GRID-set-HASH/")
    run.add_argument("--methods", type=names, metavar="A,B", help="only these methods")
    run.add_argument("--datasets", type=names, metavar="A,B", help="only these data sets")
    run.add_argument("--seeds", type=seeds, metavar="0,1|0-4", help="replace the grid's seeds")
    run.add_argument("--epochs", type=count(1, 100_000), metavar="N", help="override the number of epochs")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                     help="training device (default: auto = cuda when available)")
    run.add_argument("--workers", type=count(1, 1024), default=1, metavar="N",
                     help="runs in parallel: local worker processes sharing the CPU cores, or Ray CPU "
                          "slots (default: 1; on GPUs: GPUs x --runs-per-gpu)")
    run.add_argument("--threads", type=count(1, 1024), metavar="T",
                     help="CPU threads per run (default: the cores shared between the workers); use 1 on a "
                          "machine other jobs are using: oversubscribed torch threads are many times slower")
    run.add_argument("--runs-per-gpu", type=count(1, 64), default=1, metavar="K",
                     help="K worker processes on each GPU (default: 1)")
    run.add_argument("--pack", type=pack_size, default=1, metavar="N|auto",
                     help="train up to N runs that differ only in their seed as one stacked model "
                          "(default: 1, which measured fastest on CPU; auto: each kind of run as many as fit "
                          "in half the GPU's free memory, 1 on CPU); records are the same runs, numbers equal in "
                          "distribution")
    run.add_argument("--gpu-memory", type=gib, metavar="GIB",
                     help="with --pack auto: size packs for a GPU of GIB GiB instead of the free memory found; with "
                          "--dry-run it plans for such a GPU on any machine (e.g. --device cuda --gpu-memory 80)")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local processes (default) or Ray tasks (needs `pip install ray`)")
    run.add_argument("--address", metavar="ADDR",
                     help="Ray cluster address (e.g. ray://head:10001); default: start a local Ray instance")
    run.add_argument("--retries", type=count(0, 100), default=1, metavar="N",
                     help="extra attempts for a failed run (default: 1; diverged runs are not retried)")
    run.add_argument("--checkpoint-every", type=checkpoint_every, default=CheckpointEvery(minutes=10),
                     metavar="E|Mm", help="save a resumable checkpoint every E epochs (0: never) or, with Mm, after "
                                          "the first epoch ending M minutes after the last save (default: 10m); an "
                                          "interrupted run resumes from it")
    run.add_argument("--keep-model", action="store_true",
                     help="keep each run's trained model in RESULTS/GRID/models/RUN_ID.pt")
    run.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    run.add_argument("--data-root", metavar="DIR",
                     help="folder holding the data sets, the only place they are read from (default: "
                          "$BENCHMARK_DATA, else the system's data sets)")
    run.add_argument("--download", action="store_true",
                     help="let torchvision download missing data sets (needs internet)")
    run.add_argument("--dry-run", action="store_true",
                     help="list the runs, what is done and an estimate of the compute left (timed on this "
                          "device); train nothing")
    run.add_argument("--no-estimate", action="store_true",
                     help="with --dry-run: skip timing a few training steps of each kind of run")
    run.add_argument("--force", action="store_true", help="rerun runs that already have an ok record")
    run.add_argument("--keep-stale", action="store_true",
                     help="count ok records made by other code (another version of the method's plugin file or of "
                          "the core's numerics) as done instead of rerunning them")

    rep = sub.add_parser("report", help="tables, statistics and figures from results/ (never retrains)",
                         description="Regenerate the paper-style tables, comparisons with the plain VAE and figures "
                                     "under OUT (default reports/) from the run records in RESULTS; byte-for-byte "
                                     "identical for the same records.")
    rep.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
    rep.add_argument("--out", default="reports", metavar="DIR", help="report folder (default: reports)")
    rep.add_argument("--grid", metavar="NAME",
                     help="only this grid, written to OUT/NAME.md and OUT/NAME/ (default: every grid with records, "
                          "OUT/README.md)")
    rep.add_argument("--readme", action="store_true",
                     help="with --grid: write that grid's page to OUT/README.md instead of OUT/NAME.md")

    exp = sub.add_parser("export", help="write the records into TensorBoard event files or an MLflow file store",
                         description="Write every record under RESULTS (a results folder or one grid's folder) as a "
                                     "tracker run: config as hyperparameters, per-epoch curves and final metrics as "
                                     "scalars, artifact PNGs as images. Idempotent: unchanged records are skipped, "
                                     "changed ones replace their run. Needs the [tracking] extra.")
    exp.add_argument("--to", required=True, choices=["tensorboard", "mlflow"], help="the tracker")
    exp.add_argument("results", nargs="?", default="results", metavar="RESULTS",
                     help="results folder or one grid's folder (default: results)")
    exp.add_argument("--out", metavar="DIR|URI",
                     help="TensorBoard log folder (default: tensorboard) or MLflow store folder or tracking URI "
                          "(default: mlruns)")

    sub.add_parser("bench", add_help=False, help="measure training throughput, metric and method costs",
                           description="Measure the harness against a minimal PyTorch loop, the cost of each metric "
                                       "and method, and pythae's trainer; `bench --help` for its options.")

    chk = sub.add_parser("check-method", help="check that a method's runs train the same packed as alone",
                         description="Train method NAME on small random images as a pack of three runs and each "
                                     "run alone, with the same sampling noise, and compare the per-epoch losses and "
                                     "the trained models: a packable method whose runs share state fails "
                                     "(exit 1). A method that does not pack has nothing to check (exit 0).")
    chk.add_argument("name", metavar="NAME", help="a registered method (see `list methods`; plugins via --plugins)")
    chk.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                     help="a hyperparameter of the method (repeatable; default: the method's defaults)")

    lst = sub.add_parser("list", help="show registered methods, data sets, grids, architectures",
                         description="Show what is registered, with one-line descriptions.")
    lst.add_argument("what", nargs="?", choices=["methods", "datasets", "grids", "archs", "likelihoods"],
                     help="what to list (default: everything)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        args.rest = rest  # bench parses its own options (its module imports torch)
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    claim_reporting()  # this process names slow plugin imports, its workers do not
    if args.plugins:
        os.environ["BENCHMARK_PLUGINS"] = os.pathsep.join(
            [str(Path(p).resolve()) for p in args.plugins] + [p for p in os.environ.get("BENCHMARK_PLUGINS", "").split(os.pathsep) if p])
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        return {"run": cmd_run, "list": cmd_list, "report": cmd_report, "bench": cmd_bench,
                "check-method": cmd_check_method, "export": cmd_export}[args.command](args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are stored; rerun the same command to continue", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, a batch system's stop) does what Ctrl-C does."""
    raise KeyboardInterrupt


def cmd_bench(args: argparse.Namespace) -> int:
    from .tools import bench  # imports torch: only when asked for
    from .tools.bench.main import add_arguments, main as bench_main

    parser = argparse.ArgumentParser(prog="python -m benchmark bench", description=bench.__doc__.split("\n")[0])
    add_arguments(parser)
    return bench_main(parser.parse_args(args.rest))


def cmd_check_method(args: argparse.Namespace) -> int:
    """Exit 0: the method packs faithfully (or never packs); 1: its packed runs differ; 2: bad input."""
    from .discovery import METHODS
    from .errors import GridError
    from .ml.method import method_config
    from .tools.check_method import check, parse_hyperparameters

    try:
        hyperparameters = parse_hyperparameters(args.hp)
    except ValueError as exc:
        raise BenchmarkError(str(exc)) from None
    METHODS[args.name]  # an unknown name: the registry's error, with the known names
    try:
        method_config(args.name, hyperparameters)
    except (TypeError, ValueError, GridError) as exc:
        raise BenchmarkError(f"--hp for {args.name}: {exc}; see `list methods` for its hyperparameters") from None
    code, message = check(args.name, hyperparameters)
    print(message, file=sys.stderr if code else sys.stdout)
    return code


def cmd_report(args: argparse.Namespace) -> int:
    """Exit 0 when the report was written; 2 (nothing written) when there are no records under
    --results (for --grid), or OUT holds reports of grids that --results has no results of.
    Without --grid the page is OUT/README.md; with it OUT/NAME.md (OUT/README.md with --readme)."""
    from .report.build import build_report
    from .report.format import slug
    from .report.html import check_templates

    check_templates()  # before any work: a package without its template writes no report

    if args.readme and args.grid is None:
        raise BenchmarkError("--readme goes with --grid NAME (without --grid the report is OUT/README.md anyway)")
    if args.grid is not None:
        check_grid_name(args.grid)
    page = "README.md" if args.grid is None or args.readme else f"{slug(args.grid)}.md"
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise BenchmarkError(f"--out {args.out} is a file, not a folder; pass --out DIR")
    try:
        code, message = build_report(Path(args.results), Path(args.out), args.grid, page)
    except OSError as exc:  # a read-only --out, a file in the way
        raise BenchmarkError(f"cannot write the report into {args.out} ({exc.strerror or exc}: {exc.filename}); "
                             "pass --out DIR with a folder you can write") from None
    print(message, file=sys.stderr)
    return code


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    return export(args.to, Path(args.results), args.out)


def check_run_options(args: argparse.Namespace) -> None:
    """Refuse options that contradict each other (exit 2, before anything is read)."""
    clashes = [
        (args.force and args.keep_stale, "--force reruns every run, --keep-stale keeps stale records as done: "
                                         "pass one of them"),
        (args.address is not None and args.executor != "ray", "--address is for --executor ray: add --executor ray "
                                                               "or drop --address"),
        (args.runs_per_gpu > 1 and args.device == "cpu", "--runs-per-gpu is for GPUs, not --device cpu: use "
                                                          "--workers N for runs in parallel on the CPU"),
        (args.threads is not None and args.executor == "ray", "--threads is for local runs (a Ray task uses one "
                                                               "thread): drop it or use --executor local"),
        (args.gpu_memory is not None and args.pack != "auto", "--gpu-memory sizes the packs of --pack auto: add "
                                                               "--pack auto or drop --gpu-memory"),
        (args.gpu_memory is not None and args.device != "cuda", "--gpu-memory plans for a GPU: add --device cuda "
                                                                 "(with --dry-run no GPU is needed)"),
    ]
    for clash, message in clashes:
        if clash:
            raise BenchmarkError(message)


def cmd_run(args: argparse.Namespace) -> int:
    from .data.roots import check_data_root
    from .execution.executor import RunOptions
    from .planning.prepare import launch, prepare

    check_run_options(args)
    if args.dry_run and args.pack == "auto" and args.device == "cuda" and args.gpu_memory is None \
            and not _torch_sees_gpu():
        raise BenchmarkError("--pack auto sizes packs from the GPU's free memory, and torch sees no GPU here: plan "
                             "for one with --gpu-memory GIB (e.g. --gpu-memory 80)")
    check_data_root(args.data_root)
    prepared = prepare(args.grid, args.results, methods=args.methods, datasets=args.datasets,
                       seeds=args.seeds, epochs=args.epochs, force=args.force, keep_stale=args.keep_stale,
                       overrides=args.overrides)
    print(prepared.header(), file=sys.stderr)
    for line in prepared.warnings() + prepared.retired_text() + ([] if args.dry_run else prepared.stale_summary()):
        print(line, file=sys.stderr)
    if args.dry_run:
        print("\n".join(prepared.listing()))
        if prepared.job.todo and args.pack != 1:
            print(_pack_plan(prepared.job.todo, args.device, args.pack, args.gpu_memory))
        if prepared.job.todo and not args.no_estimate:
            planned_gpu = args.device == "cuda" and args.gpu_memory is not None and not _torch_sees_gpu()
            print("no compute estimate: no GPU here to time steps on (--gpu-memory plans packs only)" if planned_gpu
                  else _estimate(prepared.job.todo, args.device, args.data_root, args.pack, args.gpu_memory))
        return 0
    options = RunOptions(device=args.device, data_root=args.data_root, download=args.download, workers=args.workers,
                         executor=args.executor, address=args.address, runs_per_gpu=args.runs_per_gpu,
                         retries=args.retries, checkpoint_every=args.checkpoint_every, keep_model=args.keep_model,
                         threads=args.threads or 0, pack=args.pack, gpu_memory=args.gpu_memory)
    summary = launch(prepared, options)
    store = prepared.job.store
    counts = ", ".join(f"{v} {k}" for k, v in [*summary.counts.items(), ("not run", summary.not_run)] if v) or "nothing new"
    elsewhere = (f", {summary.locked} being run by another process" if summary.locked else "") + (
        f", {summary.finished_elsewhere} finished by another process" if summary.finished_elsewhere else "")
    print(f"\n{summary.total} runs: {counts}; {summary.skipped} skipped (already ok){elsewhere}\n"
          f"records: {store.runs_dir}/\ntables:  {store.dir / 'runs.csv'}, {store.dir / 'summary.csv'}", file=sys.stderr)
    summary_text = store.summary_markdown()
    if summary_text:
        print(summary_text)
    if summary.error is not None:
        print(f"error: {summary.error}", file=sys.stderr)
    return 1 if summary.counts.get("failed") or summary.error is not None else 0


def _pack_plan(runs, device: str, pack: int | str, gpu_memory: float | None) -> str:
    """The dry run's pack plan: the packs ``run`` would make and the steps they take."""
    import torch

    from .device import resolve_device
    from .execution.memory import auto_pack_size, pack_budget
    from .planning.pack_plan import plan_packs

    if pack != "auto":
        return plan_packs(runs, int(pack)).text(f"--pack {pack}")
    if gpu_memory is not None:
        return plan_packs(runs, auto_pack_size(pack_budget(torch.device("cuda"), gpu_memory), runs)).text(
            f"--pack auto for a GPU of {gpu_memory:g} GiB")
    where = resolve_device(device)
    return plan_packs(runs, auto_pack_size(pack_budget(where), runs)).text(f"--pack auto on {where}")


def _torch_sees_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _estimate(runs, device: str, data_root: str | None, pack: int | str = 1, gpu_memory: float | None = None) -> str:
    """The dry run's compute estimate, or one line saying why it could not be made (the grid was
    checked when it was loaded; what remains is e.g. a model too large for this machine's memory)."""
    from .tools.estimate import dry_run_estimate

    try:
        return dry_run_estimate(runs, device, data_root, pack, gpu_memory)
    except (RuntimeError, ValueError, MemoryError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return f"no compute estimate: timing a run failed here ({type(exc).__name__}: {first}); --no-estimate skips it"


def _type_name(tp) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return str(tp).replace("typing.", "") if typing.get_args(tp) else getattr(tp, "__name__", str(tp))


def cmd_list(args: argparse.Namespace) -> int:
    from .data.catalog import DATASETS
    from .discovery import METHODS
    from .planning.grid import grid_names, load_grid
    from .ml.likelihoods import LIKELIHOODS
    from .ml.archs import ARCHS
    from .config import ModelConfig
    from .ml.pack import pack_problem
    from .ml.method import model_problem
    from .ranges import DOC, RANGE

    what = args.what
    if what in (None, "methods"):
        print("methods:")
        kinds = {"images and vectors (mlp)": ModelConfig(arch="mlp"),
                 "sentences (lstm)": ModelConfig(arch="lstm", likelihood="categorical")}
        for name, cls in METHODS.items():
            print(f"  {name:<14} {cls.description()}")
            if cls.requires:
                print(f"  {'':<14}   requires: {cls.requires}")
            for kind, model in kinds.items():
                refused = model_problem(name, {}, model)
                print(f"  {'':<14}   on {kind}: " + ("applies" if refused is None else f"does not apply ({refused})"))
            why = pack_problem(cls)
            *rest, last = ("seed", *cls.pack_scalars)
            differing = f"{', '.join(rest)} or {last}" if rest else last
            print(f"  {'':<14}   run --pack: " + (f"packs (runs differing in {differing}; on an LSTM they run alone: "
                                                   "vmap has no batching rule for aten::lstm)" if why is None
                                                   else f"runs alone ({why})"))
            hints = typing.get_type_hints(cls.Config)
            for f in dataclasses.fields(cls.Config):
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
                valid = f" in {f.metadata[RANGE]}" if RANGE in f.metadata else ""
                doc = f"  # {f.metadata[DOC]}" if DOC in f.metadata else ""
                print(f"  {'':<14}   {f.name}: {_type_name(hints[f.name])} = {default!r}{valid}{doc}")
    if what in (None, "datasets"):
        print("datasets:")
        for name, spec in DATASETS.items():
            print(f"  {name:<18} [{spec.kind}] {spec.description}")
    if what in (None, "grids"):
        print("grids:")
        for name in grid_names():
            grid = load_grid(name)
            print(f"  {name:<10} {len(grid.expand()):>4} runs  {grid.description}")
    if what in (None, "archs"):
        print("architectures (model.arch):")
        for name, cls in ARCHS.items():
            options = ", ".join(f.name + (f" in {f.metadata[RANGE]}" if RANGE in f.metadata else "")
                                for f in dataclasses.fields(cls))
            print(f"  {name:<12} {(inspect.getdoc(cls) or '').splitlines()[0]} (options: {options})")
    if what in (None, "likelihoods"):
        print("likelihoods (model.likelihood):")
        for name, lik in LIKELIHOODS.items():
            print(f"  {name:<10} {lik.description}")
    return 0
