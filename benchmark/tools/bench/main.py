"""The bench's driver, its table and its command-line options (``python -m benchmark bench``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from ...config import EvalConfig
from ...device import resolve_device
from .common import ALL_SECTIONS, BENCH_VERSION, PACK_PRESETS, Clock, Settings, finite, load_avg, load_data, machine_info
from .costs import bench_methods, bench_metrics, quick_grid_share
from .packing import bench_pack_eval, bench_pack_host, bench_packing, format_pack_eval, format_pack_host, format_packing
from .peer import bench_pythae
from .speed import bench_compile, bench_seed_batching, bench_threads, bench_throughput
from .tables import bench_tables, format_tables
from .text import bench_text, format_text


def run_bench(settings: Settings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the selected sections; returns the JSON-ready result (torch's thread count restored)."""
    threads_before = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        return _run_bench(settings, log)
    finally:
        torch.set_num_threads(threads_before)


def _command_line() -> str:
    """How this process was started, as a user would type it."""
    first = sys.argv[0] if sys.argv else ""
    program = "python -m benchmark" if first.endswith("__main__.py") else first
    return " ".join([program, *sys.argv[1:]])


def _run_bench(settings: Settings, log: Callable[[str], None]) -> dict[str, Any]:
    device = resolve_device(settings.device)
    clock = Clock(device)
    started = time.perf_counter()
    result: dict[str, Any] = {"bench_version": BENCH_VERSION, "machine": machine_info(device),
                              "settings": finite(asdict(settings)), "command": _command_line(),
                              "sections": {}, "errors": {}}
    sections = [s for s in ALL_SECTIONS if s in settings.sections or (s == "compile" and settings.compile_modes)]
    if set(sections) <= {"text", "tables", "pack_host", "pack_eval"}:  # text loads PTB; the others need no data
        x = split = None
        source = "ptb (text section only)" if "text" in sections else "none (these sections make their own)"
    else:
        x, split, source = load_data(settings, device)
    result["data"] = source
    log(f"bench: {source} on {device} ({result['machine']['cpu']}, {torch.get_num_threads()} threads, "
        f"load {result['machine']['load_avg']}); {settings.repeats} timed repetitions + 1 warm-up"
        + (f" (text: {settings.text_epochs} timed epochs + 1)" if "text" in sections else ""))
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "throughput": lambda: bench_throughput(settings, x, device, clock),
        "threads": lambda: bench_threads(settings, x, device, clock),
        "metrics": lambda: bench_metrics(settings, x, split, device, clock),
        "methods": lambda: bench_methods(settings, x, split, device, clock),
        "pythae": lambda: bench_pythae(settings, x, device, clock),
        "seed_batching": lambda: bench_seed_batching(settings, x, device, clock),
        "compile": lambda: bench_compile(settings, x, device, clock),
        "packing": lambda: bench_packing(settings, x, device, clock),
        "pack_host": lambda: bench_pack_host(settings, device, clock),
        "pack_eval": lambda: bench_pack_eval(settings, device, clock),
        "text": lambda: bench_text(settings, device, clock),
        "tables": lambda: bench_tables(settings),
    }
    for name in sections:
        t0 = time.perf_counter()
        log(f"bench: {name} ...")
        try:
            result["sections"][name] = runners[name]()
        except Exception as exc:  # one broken section must not lose the others
            import traceback
            result["errors"][name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            log(f"bench: {name} failed: {type(exc).__name__}: {exc}")
        log(f"bench: {name} done in {time.perf_counter() - t0:.1f} s")
    if "metrics" in result["sections"] and "methods" in result["sections"]:
        result["sections"]["metrics"]["quick_grid"] = quick_grid_share(result["sections"]["metrics"],
                                                                       result["sections"]["methods"])
    result["load_avg_after"] = load_avg()
    result["elapsed_s"] = time.perf_counter() - started
    return finite(result)


def _f(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(result: dict[str, Any]) -> str:
    """The human-readable table of a bench result."""
    m = result["machine"]
    lines = [f"bench on {m['device']}" + (f" ({m['gpu']})" if m.get("gpu") else "")
             + f": {m['cpu']}, {m['torch_threads']} threads, torch {m['torch']}, {m['date']}",
             f"data: {result.get('data')}; load avg before {m['load_avg']} after {result.get('load_avg_after')}"]
    sec = result["sections"]
    if "threads" in sec and "threads_vs_one" in sec["threads"]:
        t = sec["threads"]
        lines.append(f"threads: {t['threads']} torch threads vs 1 on the minimal loop ({t['model']}): "
                     f"speed {_f(t['threads_vs_one']['ratio'], '.2f')}x (OMP_WAIT_POLICY={t['omp_wait_policy']})")
    if "throughput" in sec:
        t = sec["throughput"]
        lines += ["", f"training throughput (examples/s; {t['epochs_timed']} interleaved epochs of {t['examples_per_epoch']} "
                      f"examples, batch {t['batch_size']}; ratio = median of paired ratios)",
                  f"  {'preset':<12} {'harness':>10} {'minimal':>10} {'harness/minimal':>16} {'target':>7} "
                  f"{'minimal fused-Adam':>19} {'harness fused-Adam':>19}"]
        for name, p in t["presets"].items():
            eps = p["examples_per_s"]
            fused = p.get("fused_adam_vs_minimal", {}).get("ratio")
            fused_h = p.get("harness_fused_adam_vs_harness", {}).get("ratio")
            lines.append(f"  {name:<12} {_f(eps['harness'], '10.0f')} {_f(eps['minimal'], '10.0f')} "
                         f"{_f(p['harness_vs_minimal']['ratio'], '16.3f')} "
                         f"{'ok' if p['meets_target'] else 'MISS':>7} {_f(fused, '18.3f')}x {_f(fused_h, '18.3f')}x")
        lines.append("  (fused-Adam columns: speed with torch.optim.Adam(fused=True) relative to the same loop with the default Adam)")
    if "metrics" in sec:
        s = sec["metrics"]
        lines += ["", f"evaluation cost on {s['test_examples']} test examples ({s['model']}), "
                      f"relative to one training epoch of {s['train_examples']} examples ({_f(s['epoch_s'])} s)",
                  f"  {'metric':<20} {'seconds':>9} {'x epoch':>9}"]
        for name, c in s["metrics"].items():
            lines.append(f"  {name:<20} {_f(c['seconds'], '9.3f')} {_f(c['per_epoch'], '9.3f')}")
        q = s.get("quick_grid", {})
        if q.get("available"):
            lines.append(f"  quick grid ({q['runs']} runs), estimated: evaluate() {_f(q['evaluate_share'], '.1%')} "
                         f"of training, with per-epoch curves {_f(q['evaluate_and_curves_share'], '.1%')} "
                         f"(target < {q['target']:.0%}: {'ok' if q['meets_target'] else 'MISS'})")
    if "methods" in sec:
        s = sec["methods"]
        lines += ["", f"cost per method ({s['model']}, {s['steps']} steps of {s['batch_size']}; evaluate() with the quick "
                      f"grid's settings; relative to {s['baseline']})",
                  f"  {'method':<12} {'ms/step':>9} {'x vae':>7} {'evaluate s':>11} {'x vae':>7}"]
        for name, c in s["methods"].items():
            lines.append(f"  {name:<12} {_f(c['step_ms'], '9.2f')} {_f(c['step_cost_vs_vae'], '7.2f')} "
                         f"{_f(c['evaluate_s'], '11.3f')} {_f(c['evaluate_cost_vs_vae'], '7.2f')}")
        for name, err in s.get("failed", {}).items():
            lines.append(f"  {name:<12} failed to build: {err}")
        if s.get("not_applicable"):
            lines.append(f"  not applicable to {s['model']}: {', '.join(s['not_applicable'])}")
    if "pythae" in sec:
        s = sec["pythae"]
        lines.append("")
        if s.get("available"):
            eps = s["examples_per_s"]
            lines.append(f"pythae {s['version']} BaseTrainer ({s['device']}): {_f(eps['pythae'], '.0f')} examples/s vs "
                         f"harness {_f(eps['harness'], '.0f')}: pythae/harness = {_f(s['pythae_vs_harness']['ratio'])}; "
                         f"whole train() of 1 epoch {_f(s['train_one_epoch_whole_s'], '.2f')} s")
        else:
            lines.append(f"pythae: skipped: {s.get('reason')}")
    if "seed_batching" in sec:
        s = sec["seed_batching"]
        lines += ["", f"seed batching (torch.func.vmap, {s['seeds']} seeds, {s['model']}): batched epoch "
                      f"{_f(s['epoch_s']['batched'])} s vs {s['seeds']} sequential {_f(s['epoch_s']['sequential'])} s: "
                      f"speed-up {_f(s['speedup']['ratio'], '.2f')}x"]
    if "packing" in sec:
        lines += format_packing(sec["packing"])
    if "pack_host" in sec:
        lines += format_pack_host(sec["pack_host"])
    if "pack_eval" in sec:
        lines += format_pack_eval(sec["pack_eval"])
    if "text" in sec:
        lines += format_text(sec["text"])
    if "tables" in sec:
        lines += format_tables(sec["tables"])
    if "compile" in sec:
        for mode, c in sec["compile"]["modes"].items():
            if c.get("ok"):
                lines.append(f"torch.compile(mode={mode}): compiled/eager speed {_f(c['compiled_vs_eager']['ratio'], '.2f')}x "
                             f"(compile {_f(c['compile_s'], '.1f')} s)")
            else:
                lines.append(f"torch.compile(mode={mode}): failed: {c.get('error')}")
    for name, err in result.get("errors", {}).items():
        lines.append(f"section {name} FAILED: {err.splitlines()[0]}")
    lines.append(f"\nelapsed {result.get('elapsed_s', 0):.1f} s")
    return "\n".join(lines)


def default_out(result: dict[str, Any]) -> Path:
    m = result["machine"]
    name = "cpu"
    if m.get("gpu"):
        name = "cuda-" + "".join(c if c.isalnum() else "-" for c in m["gpu"].lower()).strip("-")
    return Path("results") / "bench" / f"{name}.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="device to measure on (default: auto = cuda when available)")
    parser.add_argument("--repeats", type=int, default=None, metavar="N",
                        help="timed repetitions per arm after one warm-up (default 5; 2 with --quick)")
    parser.add_argument("--eval-repeats", type=int, default=None, metavar="N",
                        help="repetitions of the evaluation measurements (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and synthetic data: a few seconds (checks the bench itself, not the speed)")
    parser.add_argument("--out", metavar="PATH",
                        help="JSON output (default: results/bench/<device>.json)")
    parser.add_argument("--sections", metavar="A,B", default=None,
                        help=f"subset of {','.join(ALL_SECTIONS)} (default: all but compile, which --compile adds, "
                             "packing, pack_host, pack_eval, text and tables)")
    parser.add_argument("--train-size", type=int, default=None, metavar="N",
                        help="training examples per epoch (default 20000, the quick grid's)")
    parser.add_argument("--throughput-examples", type=int, default=None, metavar="N",
                        help="examples per epoch of the throughput and seed-batching comparisons (default 2560)")
    parser.add_argument("--test-size", type=int, default=None, metavar="N",
                        help="test examples for the metrics (default: the whole test split)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="B", help="default 128")
    parser.add_argument("--data", default=None, metavar="NAME",
                        help="fashion-mnist (default; synthetic tensors when missing) or synthetic")
    parser.add_argument("--data-root", metavar="DIR", help="folder holding the data sets (also $BENCHMARK_DATA)")
    parser.add_argument("--seed-batch", type=int, default=None, metavar="S",
                        help="seeds trained as one vmapped model in seed_batching (default 4)")
    parser.add_argument("--pack-sizes", default=None, metavar="K,K",
                        help="pack sizes of the packing section (default 1,8,32,128; --quick 1,4)")
    parser.add_argument("--pack-methods", default=None, metavar="A,B",
                        help="methods of the packing section (default: vae,beta-vae,lr-vae,lid-vae,il-lid-vae)")
    parser.add_argument("--pack-presets", default=None, metavar="A,B",
                        help="architectures of the packing section (default: mlp-1x512,mlp-4x512,conv64)")
    parser.add_argument("--text-sentences", type=int, default=None, metavar="N",
                        help="text section: PTB training sentences per timed epoch (default 256; 128 with --quick)")
    parser.add_argument("--text-epochs", type=int, default=None, metavar="N",
                        help="text section: timed epochs per arm after one warm-up (default 6; 4 with --quick)")
    parser.add_argument("--table-records", type=int, default=None, metavar="N",
                        help="tables section: records the results folder grows to (default 2000, timed at 100, 1000 "
                             "and 2000; 60 with --quick)")
    parser.add_argument("--method-steps", type=int, default=None, metavar="K",
                        help="optimiser steps per method and repetition (default 20)")
    parser.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODES",
                        help="also time torch.compile on the minimal loop, in these comma-separated modes "
                             "(default mode: default; e.g. default,reduce-overhead on cuda)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="torch.set_num_threads(N)")
    parser.add_argument("--eval-set", default=None, metavar="K=V,...",
                        help="measure evaluation with these EvalConfig fields changed, e.g. "
                             "nll_samples=0,mi_curve_every=0 (what-if costs; the default is the defaults)")


def parse_eval_set(text: str) -> dict[str, Any]:
    """``nll_samples=0,mi_mixture=batch`` -> {"nll_samples": 0, "mi_mixture": "batch"}, checked
    against :class:`benchmark.config.EvalConfig`."""
    names = {f.name for f in dataclasses.fields(EvalConfig)}
    values: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, raw = part.partition("=")
        if not sep or key.strip() not in names:
            raise SystemExit(f"bench: --eval-set {part!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(names))}")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw.strip()
    return values


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for key in ("repeats", "eval_repeats", "throughput_examples", "train_size", "test_size", "batch_size", "data", "seed_batch", "method_steps",
                "threads", "text_sentences", "text_epochs", "table_records"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    overrides["device"] = args.device
    overrides["data_root"] = args.data_root
    if args.sections:
        names = tuple(s.strip() for s in args.sections.split(",") if s.strip())
        unknown = [s for s in names if s not in ALL_SECTIONS]
        if unknown:
            raise SystemExit(f"bench: unknown section(s) {', '.join(unknown)}; valid: {', '.join(ALL_SECTIONS)}")
        overrides["sections"] = names
    if getattr(args, "pack_sizes", None):
        try:
            overrides["pack_sizes"] = tuple(int(k) for k in args.pack_sizes.split(",") if k.strip())
        except ValueError:
            raise SystemExit(f"bench: --pack-sizes takes counts such as 1,8,32, got {args.pack_sizes!r}") from None
        if not overrides["pack_sizes"] or min(overrides["pack_sizes"]) < 1:
            raise SystemExit("bench: --pack-sizes must be counts of at least 1")
    if getattr(args, "pack_methods", None):
        overrides["pack_methods"] = tuple(m.strip() for m in args.pack_methods.split(",") if m.strip())
    if getattr(args, "pack_presets", None):
        known = {p.name: p for p in PACK_PRESETS}
        wanted = [n.strip() for n in args.pack_presets.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in known]
        if unknown or not wanted:
            raise SystemExit(f"bench: --pack-presets {args.pack_presets!r}: valid: {', '.join(known)}")
        overrides["pack_presets"] = tuple(known[n] for n in wanted)
    if args.eval_set:
        overrides["eval_overrides"] = parse_eval_set(args.eval_set)
    if args.compile:
        overrides["compile_modes"] = tuple(m.strip() for m in args.compile.split(",") if m.strip())
    if overrides.get("repeats", 1) < 1 or overrides.get("eval_repeats", 1) < 1:
        raise SystemExit("bench: --repeats and --eval-repeats must be at least 1")
    if overrides.get("table_records", 1) < 1:
        raise SystemExit("bench: --table-records must be at least 1")
    if overrides.get("text_sentences", 2) < 2 or overrides.get("text_epochs", 1) < 1:
        raise SystemExit("bench: --text-sentences must be at least 2 and --text-epochs at least 1")
    if args.quick:
        quick = Settings.quick_mode()
        overrides["eval_overrides"] = {**quick.eval_overrides, **overrides.get("eval_overrides", {})}
        return Settings.quick_mode(**overrides)
    return Settings(**overrides)


def main(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    result = run_bench(settings, lambda line: print(line, file=sys.stderr, flush=True))
    out = Path(args.out) if args.out else default_out(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    print(format_table(result))
    print(f"written: {out}")
    return 1 if result["errors"] else 0
