"""What ``train.precision`` changes in the numbers: the same small grid trained in FP32 and in each
other precision on one device, every run's metrics side by side (``docs/performance.md``,
"Training precision").

    python -m benchmark.tools.precision_check --device cpu --precisions fp32,bf16
    python -m benchmark.tools.precision_check --device cuda --precisions fp32,tf32,bf16   # on a GPU

The grid: Fashion-MNIST (5000 training, 1000 test examples), 3 epochs, an MLP of 256 units,
latent 16, seeds 0 and 1 of vae, lr-vae and lid-vae (ICNNs 64 wide); the IW-NLL with 100 samples
on 500 examples. Records go to a temporary folder; the comparison is printed and written as JSON
(default ``results/bench/<device>-precision.json``). The runs differ from their first step on, so
a difference is that of two trainings diverging by rounding, not the error of one number: each
row sets it beside the difference between seed 0 and seed 1 in FP32 (what another seed changes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..cli import main as cli_main

GRID = """description = "precision check: one small grid in each training precision"
seeds = [0, 1]
[train]
epochs = 3
batch_size = 128
[model]
arch = "mlp"
hidden = [256]
latent_dim = 16
likelihood = "bernoulli"
[eval]
nll_samples = 100
nll_examples = 500
geometry_points = 0
noise_points = 0
mi_curve_every = 0
[[datasets]]
name = "fashion-mnist"
train_size = 5000
test_size = 1000
[[methods]]
name = "vae"
[[methods]]
name = "lr-vae"
[[methods]]
name = "lid-vae"
hidden_data = 64
hidden_latent = 64
"""
METRICS = ("rec", "kl", "neg_elbo", "nll", "mi", "au_count")


def run_precision(grid: Path, results: Path, device: str, precision: str, data_root: str | None) -> dict[str, dict]:
    """Train the grid in ``precision``; its records' metrics by method."""
    args = ["run", "--grid", str(grid), "--results", str(results / precision), "--device", device,
            "--set", f'train.precision="{precision}"', "--checkpoint-every", "0"]
    if data_root:
        args += ["--data-root", data_root]
    if cli_main(args) != 0:
        raise SystemExit(f"precision_check: the grid failed in {precision}")
    records = [json.loads(p.read_text()) for p in (results / precision).glob("*/runs/*.json")]
    return {f"{r['config']['method']} seed {r['config']['seed']}": {k: r["metrics"].get(k) for k in METRICS}
            for r in records}


def compare(by_precision: dict[str, dict[str, dict]]) -> list[dict[str, Any]]:
    """One row per method, metric and precision other than fp32 (seed 0): both values, their
    difference, and FP32's difference between seeds 1 and 0 (``seed_difference``)."""
    rows = []
    base = by_precision["fp32"]
    for precision, runs in by_precision.items():
        if precision == "fp32":
            continue
        for run in sorted(r for r in base if r.endswith(" seed 0")):
            method, other = run.rsplit(" seed ", 1)[0], run.replace(" seed 0", " seed 1")
            for metric in METRICS:
                a, b = base[run].get(metric), runs.get(run, {}).get(metric)
                seed1 = base.get(other, {}).get(metric)
                if a is None or b is None:
                    continue
                rows.append({"precision": precision, "method": method, "metric": metric, "fp32": a, "value": b,
                             "difference": b - a, "seed_difference": None if seed1 is None else seed1 - a})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.tools.precision_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated, fp32 first (default fp32,bf16)")
    parser.add_argument("--data-root", help="the folder holding fashion-mnist (default: the usual search)")
    parser.add_argument("--out", help="JSON output (default results/bench/<device>-precision.json)")
    args = parser.parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not precisions or precisions[0] != "fp32":
        parser.error("--precisions must start with fp32 (the reference)")
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "precision.toml"
        grid.write_text(GRID)
        by_precision = {p: run_precision(grid, Path(tmp) / "results", args.device, p, args.data_root) for p in precisions}
    rows = compare(by_precision)
    out = Path(args.out or f"results/bench/{args.device}-precision.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": args.device, "grid": GRID, "metrics": by_precision, "rows": rows}, indent=1) + "\n")
    print(f"{'precision':<9} {'method':<8} {'metric':<9} {'fp32':>12} {'value':>12} {'difference':>12} "
          f"{'fp32 seed 1 - seed 0':>21}")
    for r in rows:
        seed = "-" if r["seed_difference"] is None else f"{r['seed_difference']:+.4f}"
        print(f"{r['precision']:<9} {r['method']:<8} {r['metric']:<9} {r['fp32']:12.4f} {r['value']:12.4f} "
              f"{r['difference']:+12.4f} {seed:>21}")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
