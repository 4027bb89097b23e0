"""How much compute a list of runs needs, calibrated by timing real training steps here.

Runs are grouped into *kinds* that cost the same per step: the data shape, the method, the
method's hyperparameters other than floats (floats such as beta, alpha_T or L weight terms:
they change the numbers, not the work), the model config and the batch size / optimiser. One
model of each kind is built with :func:`benchmark.ml.method.build_method` and trained for a few
steps on synthetic data of the right shape (random uint8 pixels for image sets, as the trainer
gets them; random sentences of the data set's mean length for text sets, whose training split is
read once to learn it; uniform in [0, 1] otherwise) on the given device, and its evaluation
passes are timed at the sizes the runner uses. A run's time is then

    train: seconds per step (the method's training_step) x epochs x ceil(train examples / batch size)
    eval:  no-grad encoder passes over the test split (EVAL_BATCH examples each) for each
           curve point and at the end, one encoder + decoder pass over it, and the decoder
           passes of the importance-weighted NLL (nll_samples x nll_examples latent codes,
           IW_CHUNK x IW_BATCH at a time; timed through the runner's own IW-NLL)

plus, for a run validated every epoch (``lr_schedule = "plateau"`` or ``select_best``), one
encoder + decoder pass over the validation split per epoch. Epochs are the configured ones: a
plateau schedule that stops early, or aggressive inference that stops being aggressive, makes the
run cheaper (aggressive steps are timed in their aggressive phase: an upper bound).
The published split sizes are used when a run uses the whole split. An IW-NLL pass is timed at its
real size on a GPU, where a large pass costs little more than a small one; on a CPU, where the
cost grows in proportion to the codes, at CPU_IW_CODES codes and scaled. Not counted: the MI
estimate (quadratic in the test size; small on a GPU), decoder-geometry Jacobians, start-up
and data loading (preprocessing CelebA / FFHQ once takes minutes on its own). The estimate
is for running the runs one after the other on the timed device;
``python -m benchmark.tools.check_estimate`` compares it with real runs.

With ``pack`` K > 1 (``run --dry-run --pack K``), the runs of a packable kind are grouped as
``run --pack K`` groups them (:func:`benchmark.execution.executor.make_packs`) and a training step of a
pack of each size that occurs is timed; each run of a pack is charged 1 / size of it. The
evaluation is charged per run as without packing (it runs one run at a time).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..config import RunConfig
from ..data.catalog import DATASETS, full_splits
from ..data.splits import to_unit
from ..data.vocabulary import BOS_ID, EOS_ID
from ..device import describe_device, resolve_device
from ..discovery import METHODS
from ..ml.method import Method, TrainingProgress, build_method
from ..evaluation.metrics import IW_BATCH, IW_CHUNK
from ..ml.pack import pack_problem
from ..ml.train import OptimiserTools, Trainer, make_optimizer
from ..evaluation.evaluate import EVAL_BATCH, iw_log_px


@dataclass(frozen=True)
class KindTiming:
    """Measured cost of one kind of run, in seconds."""

    description: str
    runs: int
    step_s: float  # one training step (forward, backward, optimiser) at the run's batch size
    encode_s: float  # one no-grad encoder pass of EVAL_BATCH examples
    forward_s: float  # one no-grad encoder + decoder pass of EVAL_BATCH examples
    iw_code_s: float  # one latent code of an IW-NLL pass (decoding it, its likelihood and weight)


@dataclass
class EstimateRow:
    """The runs of one data set and method: how many, their optimiser steps, hours."""

    dataset: str
    method: str
    runs: int = 0
    steps: int = 0  # optimiser steps over all these runs
    train_hours: float = 0.0
    eval_hours: float = 0.0

    @property
    def hours(self) -> float:
        return self.train_hours + self.eval_hours


@dataclass
class ComputeEstimate:
    """Per data set x method rows (sorted), the timed kinds and the calibration settings."""

    device: str
    rows: list[EstimateRow]
    kinds: list[KindTiming] = field(default_factory=list)
    timed_steps: int = 0
    calibration_s: float = 0.0  # wall time spent timing
    pack: int = 1  # most runs per pack (run --pack)

    @property
    def runs(self) -> int:
        return sum(r.runs for r in self.rows)

    @property
    def hours(self) -> float:
        return sum(r.hours for r in self.rows)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class DataShapes:
    """Per-example shape and published split sizes of each data set: from its DatasetSpec, or
    (a data set registered without them) by loading it once from ``data_root``; for a text set
    also its sentences' mean length in tokens (:meth:`mean_length`, from its training split)."""

    def __init__(self, data_root: str | Path | None):
        self.data_root = data_root
        self.loaded: dict[str, tuple[tuple[int, ...], int, int]] = {}
        self.lengths: dict[str, tuple[int, int]] = {}  # text set -> (mean length, validation sentences)

    def __call__(self, name: str) -> tuple[tuple[int, ...], int, int]:
        spec = DATASETS[name]
        if spec.shape is not None and spec.train_size and spec.test_size:
            return spec.shape, spec.train_size, spec.test_size
        if name not in self.loaded:
            full = full_splits(name, self.data_root)
            self.loaded[name] = (full.shape, len(full.train), len(full.test))
        return self.loaded[name]

    def mean_length(self, name: str) -> int:
        """Mean tokens per training sentence of text set ``name`` (rounded up)."""
        if name not in self.lengths:
            full = full_splits(name, self.data_root)
            valid = len(full.valid) if full.valid is not None else 0
            self.lengths[name] = (math.ceil(float(full.train.lengths.double().mean())), valid)
        return self.lengths[name][0]

    def valid_size(self, name: str) -> int:
        """Examples of the published validation split (0: none)."""
        if DATASETS[name].kind == "sequence":
            self.mean_length(name)
            return self.lengths[name][1]
        return DATASETS[name].valid_size or 0


def cost_key(run: RunConfig, shape: tuple[int, ...]) -> str:
    """What decides a run's cost per step (see the module docstring)."""
    hyper = {k: v for k, v in run.hyperparameters.items() if not isinstance(v, float)}
    return json.dumps([list(shape), run.method, hyper, dataclasses.asdict(run.model), run.train.batch_size,
                       run.train.optimizer, run.train.grad_clip > 0], sort_keys=True)


CPU_IW_CODES = 1024  # codes of the timed IW-NLL pass on a CPU (see the module docstring)


def _passes(seconds: float, examples: int, batch: int) -> float:
    return seconds * math.ceil(examples / batch) if examples > 0 else 0.0


def _timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn(i)``, i = 0..repeats-1, each timed on its own (robust to the odd
    slow step of a busy machine)."""
    times = []
    for i in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn(i)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _synthetic(kind: str, rows: int, shape: tuple[int, ...], device: torch.device, length: int = 0) -> torch.Tensor:
    """``rows`` examples as the trainer sees them: random uint8 pixels for image sets (converted
    each step), random sentences of ``length`` tokens for text sets (``shape``: its
    SequenceShape), uniform in [0, 1] otherwise."""
    if kind == "sequence":
        x = torch.randint(4, shape[1], (rows, length), device=device)
        x[:, 0], x[:, -1] = BOS_ID, EOS_ID
        return x
    if kind == "image":
        return torch.randint(0, 256, (rows, *shape), dtype=torch.uint8, device=device)
    return torch.rand((rows, *shape), device=device)


def time_kind(run: RunConfig, shape: tuple[int, ...], device: torch.device, steps: int = 5,
              warmup: int = 2, length: int = 0) -> tuple[float, float, float, float]:
    """:class:`KindTiming`'s (step_s, encode_s, forward_s, iw_code_s) of ``run``'s kind on
    ``device``: medians over ``steps`` timed training steps after ``warmup`` untimed ones, and
    over 3 timed evaluation passes after one untimed (text: sentences of ``length`` tokens). The
    global RNG state is restored."""
    kind = DATASETS[run.dataset.name].kind
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        method: Method = build_method(run.method, run.hyperparameters, run.model, shape).to(device)
        optimizer = make_optimizer(method.parameters(), run.train)
        x = _synthetic(kind, run.train.batch_size, shape, device, length)
        total = warmup + steps

        # The method's own training step (a remedy may take several optimiser steps per batch,
        # e.g. aggressive inference's inner encoder loop: timed in that, its costliest, phase).
        tools = OptimiserTools(method, optimizer, run.train, x, torch.Generator().manual_seed(0))

        def step(i: int) -> None:
            method.training_step(to_unit(x), TrainingProgress(0, i, total), tools)

        method.train()
        for i in range(warmup):
            step(i)
        step_s = _timed(lambda i: step(warmup + i), device, steps)
        del x, optimizer
        method.eval()
        with torch.no_grad():
            model = method.model
            x = to_unit(_synthetic(kind, EVAL_BATCH, shape, device, length)) if kind == "sequence" else \
                torch.rand((EVAL_BATCH, *shape), device=device)
            x_iw = x[:IW_BATCH if device.type == "cuda" else max(1, CPU_IW_CODES // IW_CHUNK)]
            model.decode_given(model.encode(x)[0], x), iw_log_px(model, x_iw, IW_CHUNK, None)  # warm-up
            encode_s = _timed(lambda i: model.encode(x), device, 3)
            forward_s = _timed(lambda i: model.decode_given(model.encode(x)[0], x), device, 3)
            iw_code_s = _timed(lambda i: iw_log_px(model, x_iw, IW_CHUNK, None), device, 3) / (IW_CHUNK * len(x_iw))
    return step_s, encode_s, forward_s, iw_code_s


def time_pack_step(run: RunConfig, shape: tuple[int, ...], device: torch.device, size: int, steps: int = 5,
                   warmup: int = 2) -> float:
    """Median seconds of one training step of a pack of ``size`` runs of ``run``'s kind on
    ``device`` (after ``warmup`` untimed steps); the global RNG state is restored."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        methods = []
        for seed in range(size):
            torch.manual_seed(seed)
            methods.append(build_method(run.method, run.hyperparameters, run.model, shape).to(device))
        x = _synthetic(DATASETS[run.dataset.name].kind, run.train.batch_size, shape, device)
        trainer = Trainer(methods, [x] * size, run.train, [torch.Generator().manual_seed(s) for s in range(size)])
        packed = to_unit(x).expand(size, *x.shape).contiguous()
        total = warmup + steps
        for i in range(warmup):
            trainer.step(packed, TrainingProgress(0, i, total))
        return _timed(lambda i: trainer.step(packed, TrainingProgress(0, warmup + i, total)), device, steps)


def _curve_points(run: RunConfig) -> int:
    every = max(1, run.eval.curve_every)
    mi_every = getattr(run.eval, "mi_curve_every", 0) or 0
    epochs = run.train.epochs
    return sum(1 for e in range(1, epochs + 1)
               if e % every == 0 or e == epochs or (mi_every and e % mi_every == 0))


def estimate_compute(runs: list[RunConfig], device: str | torch.device = "auto", data_root: str | Path | None = None,
                     steps: int = 5, warmup: int = 2, pack: int | Callable[[RunConfig], int] = 1) -> ComputeEstimate:
    """Estimated hours of ``runs`` on ``device`` per data set x method (see the module
    docstring), timing ``steps`` training steps (after ``warmup``) of each distinct kind, and of
    a pack of each size that occurs with ``pack`` > 1.

    ``data_root`` is only used for a data set registered without its shape and split sizes
    (it is then loaded once to learn them); the registered image sets never need their files.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    torch_device = resolve_device(str(device))
    where = describe_device(torch_device)
    shapes = DataShapes(data_root)
    kinds: dict[str, list[RunConfig]] = defaultdict(list)
    for run in runs:
        kinds[cost_key(run, shapes(run.dataset.name)[0])].append(run)
    started = time.perf_counter()
    timings: dict[str, tuple[float, float, float]] = {}
    described: dict[str, KindTiming] = {}
    def length(name: str) -> int:
        return shapes.mean_length(name) if DATASETS[name].kind == "sequence" else 0

    for key, members in kinds.items():
        first = members[0]
        shape = shapes(first.dataset.name)[0]
        timings[key] = time_kind(first, shape, torch_device, steps, warmup, length(first.dataset.name))
        described[key] = KindTiming(_describe(first, key, shape), len(members), *timings[key])
    run_step_s: dict[str, float] = {}  # run id -> seconds of training per step charged to it
    largest = 1  # the largest pack
    if pack != 1:
        from ..execution.executor import make_packs

        for key, members in kinds.items():
            if pack_problem(METHODS[members[0].method], members[0].model) is not None:
                continue
            shape = shapes(members[0].dataset.name)[0]
            sizes: dict[int, float] = {1: timings[key][0]}
            for group in make_packs(members, pack):
                largest = max(largest, len(group))
                if len(group) not in sizes:
                    sizes[len(group)] = time_pack_step(group[0], shape, torch_device, len(group), steps, warmup)
                for run in group:
                    run_step_s[run.run_id] = sizes[len(group)] / len(group)
            described[key] = dataclasses.replace(
                described[key], description=described[key].description + " | packs: " + ", ".join(
                    f"{n} runs {t:.4f} s/step" for n, t in sorted(sizes.items()) if n > 1))
    rows: dict[tuple[str, str], EstimateRow] = {}
    for key, members in kinds.items():
        step_s, encode_s, forward_s, iw_code_s = timings[key]
        for run in members:
            _, train_full, test_full = shapes(run.dataset.name)
            n_train = min(run.dataset.train_size or train_full, train_full)
            n_test = min(run.dataset.test_size or test_full, test_full)
            run_steps = run.train.epochs * math.ceil(n_train / run.train.batch_size)
            nll_codes = run.eval.nll_samples * min(run.eval.nll_examples, n_test)
            eval_s = ((_curve_points(run) + 1) * _passes(encode_s, n_test, EVAL_BATCH)
                      + _passes(forward_s, n_test, EVAL_BATCH) + iw_code_s * nll_codes)
            if run.train.lr_schedule == "plateau" or run.train.select_best:  # a validation pass per epoch
                eval_s += run.train.epochs * _passes(forward_s, shapes.valid_size(run.dataset.name), EVAL_BATCH)
            row = rows.setdefault((run.dataset.name, run.method), EstimateRow(run.dataset.name, run.method))
            row.runs += 1
            row.steps += run_steps
            row.train_hours += run_step_s.get(run.run_id, step_s) * run_steps / 3600
            row.eval_hours += eval_s / 3600
    return ComputeEstimate(where, [rows[k] for k in sorted(rows)], list(described.values()), steps,
                           time.perf_counter() - started, largest)


def _describe(first: RunConfig, key: str, shape: tuple[int, ...]) -> str:
    options = ",".join(f"{k}={v}" for k, v in first.model.options.items())
    defaults = dataclasses.asdict(METHODS[first.method].Config())
    hyper = ",".join(f"{k}={v}" for k, v in json.loads(key)[2].items() if defaults.get(k) != v)
    return (f"{first.method}({hyper}) {list(shape)} {first.model.arch}({options}) latent {first.model.latent_dim} "
            f"batch {first.train.batch_size}")


def _hours(h: float) -> str:
    return f"{h:.3g}" if h < 10 else f"{h:,.0f}"


def format_estimate(estimate: ComputeEstimate, gpus: int | None = None, kinds: bool = False) -> str:
    """The dry-run printout: one line per data set x method (runs, optimiser steps, hours),
    the total, and how the numbers were obtained. ``kinds`` adds the timing of each kind;
    ``gpus`` adds the wall time when the runs are spread over that many such devices."""
    head = f"{'dataset':>16} {'method':<12} {'runs':>5} {'steps/run':>10} {'train h':>9} {'eval h':>8} {'hours':>9}"
    lines = [f"compute estimate on {estimate.device}, from {estimate.timed_steps} timed steps of each of "
             f"{len(estimate.kinds)} kinds of run ({estimate.calibration_s:.1f} s of timing):", head]
    for r in estimate.rows:
        lines.append(f"{r.dataset:>16} {r.method:<12} {r.runs:>5} {r.steps // max(r.runs, 1):>10,} "
                     f"{_hours(r.train_hours):>9} {_hours(r.eval_hours):>8} {_hours(r.hours):>9}")
    train = sum(r.train_hours for r in estimate.rows)
    evaluation = sum(r.eval_hours for r in estimate.rows)
    lines.append(f"{'total':>16} {'':<12} {estimate.runs:>5} {'':>10} {_hours(train):>9} {_hours(evaluation):>8} "
                 f"{_hours(estimate.hours):>9}")
    how = "one run after another" if estimate.pack <= 1 else f"in packs of up to {estimate.pack} runs"
    per_device = f"{_hours(estimate.hours)} h {how} on this {estimate.device.split(' ')[0]}"
    if gpus and gpus > 1:
        per_device += f"; about {_hours(estimate.hours / gpus)} h spread over {gpus} such devices"
    lines.append(f"= {per_device} (training steps and evaluation passes only; see benchmark/tools/estimate.py)")
    if kinds:
        lines.append(f"timed kinds (s per training step | per no-grad encode, encode + decode of {EVAL_BATCH} "
                     f"examples | us per code decoded in the IW-NLL):")
        lines += [f"  {k.step_s:9.4f} {k.encode_s:9.4f} {k.forward_s:9.4f} {1e6 * k.iw_code_s:9.2f}  x{k.runs:<4} "
                  f"{k.description}" for k in estimate.kinds]
    return "\n".join(lines)


def dry_run_estimate(runs: list[RunConfig], device: str, data_root: str | Path | None = None,
                     pack: int | str = 1, gpu_memory: float | None = None) -> str:
    """The estimate a dry run prints for ``runs`` on ``device`` ("auto", "cpu", "cuda"), with
    the timed kinds and, on a GPU, the wall time spread over the visible GPUs; ``pack``: as
    ``run --pack`` (a count or "auto", sized for ``gpu_memory`` GiB when given)."""
    size: int | Callable[[RunConfig], int] = int(pack) if pack != "auto" else 1
    if pack == "auto":
        from ..execution.memory import auto_pack_size, pack_budget

        size = auto_pack_size(pack_budget(resolve_device(device), gpu_memory), runs)
    before = _load()
    estimate = estimate_compute(runs, device, data_root=data_root, pack=size)
    gpus = torch.cuda.device_count() if estimate.device.startswith("cuda") else None
    text = format_estimate(estimate, gpus=gpus, kinds=True)
    note = busy_note(max(before, _load()), os.cpu_count() or 1) if not estimate.device.startswith("cuda") else ""
    return text + (f"\n{note}" if note else "")


def _load() -> float:
    """The 1-minute load average (0 where the system has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def busy_note(load: float, cores: int) -> str:
    """A warning when the CPU was busy while the steps were timed (1-minute load average above half
    the cores): the timings, and so the estimate, can then be several times too long; else ''."""
    if load <= cores / 2:
        return ""
    return (f"note: this machine was busy while the steps were timed (load average {load:.1f} on {cores} cores): "
            "the estimate can be several times too long; time it again on an idle machine")
