"""Time a dry run of many runs: what ``run --dry-run`` costs beside training (expanding the grid,
the run ids, the code keys, the records' states, the plan and the listing).

    python -m benchmark.tools.dry_run_time --grid smoke --seeds 2632   # about 100,000 runs
    python -m benchmark.tools.dry_run_time --grid smoke --seeds 100 --profile 25

runs ``run --grid GRID --seeds 0-(N-1) --dry-run --no-estimate`` in this process against a scratch
results folder (``--results DIR``: that one, with its records), the listing thrown away, after
importing torch and the plugins (timed apart: every command pays them once). ``--profile K``
also prints cProfile's K most expensive functions by cumulative time.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import sys
import tempfile
import time

from ..arguments import MAX_SEEDS, count
from ..cli import main as cli_main
from ..discovery import METHODS


def time_dry_run(grid: str, seeds: int, results: str,
                 profile: cProfile.Profile | None = None) -> tuple[int, int, float]:
    """The exit status, the runs listed and the seconds of one dry run of ``grid`` with seeds
    ``0..seeds-1`` against ``results`` (an error is on stderr, as the command prints it)."""
    listing = io.StringIO()
    args = ["run", "--grid", grid, "--seeds", f"0-{seeds - 1}", "--results", results, "--dry-run", "--no-estimate"]
    started = time.perf_counter()
    with contextlib.redirect_stdout(listing):
        code = cli_main(args) if profile is None else profile.runcall(cli_main, args)
    seconds = time.perf_counter() - started
    return code, sum(line.startswith(("done ", "stale ", "todo ")) for line in listing.getvalue().splitlines()), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.tools.dry_run_time", description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default="smoke", help="grid name or TOML file (default: smoke)")
    parser.add_argument("--seeds", type=count(1, MAX_SEEDS), default=2632, metavar="N",
                        help="seeds 0..N-1 (default 2632: about 100,000 runs of smoke)")
    parser.add_argument("--results", help="results folder whose records the runs are checked against "
                                           "(default: an empty scratch folder)")
    parser.add_argument("--profile", type=count(1, 1000), metavar="K", help="print the K most expensive functions")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    METHODS.names()  # torch and the plugins, imported once per process
    imports = time.perf_counter() - started
    profile = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory(prefix="dry-run-time-") as scratch:
        code, runs, seconds = time_dry_run(args.grid, args.seeds, args.results or scratch, profile)
    if code != 0:
        return code
    print(f"{args.grid} with {args.seeds} seeds: {runs} runs, dry run {seconds:.1f} s "
          f"({seconds / max(runs, 1) * 1e6:.0f} us per run; torch and plugins imported before, in {imports:.1f} s)")
    if profile is not None:
        pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
