"""The bench's ``packing`` section: K runs trained as one stacked model (``run --pack K``)
against the same K runs trained one after another, through the harness's own trainer.

For each of the paper's architectures (MLPs of 1 x 512 and 4 x 512, latent 32; conv64 on random 3 x 64 x 64
pixels, latent 64) and each packable method, one epoch of ``throughput_examples`` examples is timed
for a pack of K runs and for one run alone, interleaved; the speed of packing is
``K * t(one run) / t(pack of K)`` per repetition (median of the paired ratios), so 1.0 means
packing gains nothing and K means the pack costs what one run costs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from ...config import TrainConfig
from ...ml.train import Trainer
from .common import Clock, Settings, median, rotate, timed
from .loops import harness_method


def _pack_epoch(settings: Settings, preset, method: str, x: Tensor, device: torch.device, size: int):
    """A callable running one more epoch of a pack of ``size`` runs (seeds 0..size-1)."""
    shape = tuple(x.shape[1:])
    hp = settings.hyperparameters(method)
    methods = [harness_method(preset, shape, device, method, seed, hp) for seed in range(size)]
    config = TrainConfig(epochs=10**9, batch_size=settings.batch_size)
    trainer = Trainer(methods, [x] * size, config, [torch.Generator().manual_seed(s) for s in range(size)])
    return trainer.run_epoch


def bench_packing(settings: Settings, x: Tensor, device: torch.device, clock: Clock) -> dict[str, Any]:
    """Seconds per epoch of a pack of K runs and of one run, per preset, method and K, and the
    speed of packing (``K * t(1) / t(K)``, paired per repetition)."""
    x = x[: settings.throughput_examples]
    out: dict[str, Any] = {"examples_per_epoch": x.shape[0], "batch_size": settings.batch_size,
                           "pack_sizes": list(settings.pack_sizes), "presets": {},
                           "note": "speed = K x (seconds of one run's epoch) / (seconds of the pack's epoch)"}
    for preset in settings.pack_presets:
        per_method: dict[str, Any] = {}
        data = x
        if preset.shape is not None and tuple(x.shape[1:]) != preset.shape:  # e.g. conv64: random 64x64 pixels
            generator = torch.Generator().manual_seed(0)
            data = torch.randint(0, 256, (x.shape[0], *preset.shape), generator=generator, dtype=torch.uint8).to(device)
        for method in settings.pack_methods:
            try:
                single = _pack_epoch(settings, preset, method, data, device, 1)
            except (RuntimeError, ValueError, torch.OutOfMemoryError) as exc:  # e.g. a method that does not apply
                per_method[method] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                continue
            rows: dict[str, Any] = {}
            for size in settings.pack_sizes:
                if size == 1:
                    continue
                try:
                    packed = _pack_epoch(settings, preset, method, data, device, size)
                except (RuntimeError, torch.OutOfMemoryError) as exc:  # e.g. out of memory at this K
                    rows[str(size)] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                    continue
                times: dict[str, list[float]] = {"one": [], "pack": []}
                arms = {"one": single, "pack": packed}
                for r in range(settings.repeats + 1):
                    for name in rotate(list(arms), r):
                        t0 = clock()
                        arms[name]()
                        times[name].append(clock() - t0)
                ratios = [size * a / b for a, b in zip(timed(times["one"]), timed(times["pack"]))]
                rows[str(size)] = {"epoch_s": {k: median(timed(v)) for k, v in times.items()},
                                   "speed": median(ratios), "ratios": ratios, "times_s": times}
                del packed
            per_method[method] = rows
        out["presets"][preset.name] = per_method
    return out


def format_packing(section: dict[str, Any]) -> list[str]:
    """The table lines of the packing section."""
    sizes = [k for k in section["pack_sizes"] if k != 1]
    lines = ["", f"packing: speed of a pack of K runs against K runs one after another ({section['examples_per_epoch']} "
                 f"examples per epoch, batch {section['batch_size']}; {section['note']})",
             f"  {'preset':<12} {'method':<12} " + " ".join(f"{'K=' + str(k):>9}" for k in sizes)]
    for preset, methods in section["presets"].items():
        for method, rows in methods.items():
            if "error" in rows:
                lines.append(f"  {preset:<12} {method:<12} failed: {rows['error'][:80]}")
                continue
            cells = []
            for k in sizes:
                row = rows.get(str(k), {})
                cells.append(f"{row['speed']:8.2f}x" if "speed" in row else f"{'error':>9}")
            lines.append(f"  {preset:<12} {method:<12} " + " ".join(cells))
    return lines


HOST_TARGETS = {32: 2.0, 128: 4.0}  # issue targets: a pack's step at most this many times one run's
HOST_STEPS = 20  # steps per timed repetition
# the tiny model's own networks of a method (LID's ICNNs: 512 wide by default, which is compute, not host cost)
TINY_HYPERPARAMETERS = {"hidden_data": 8, "hidden_latent": 8}


def tiny_methods(method: str, size: int, device: torch.device) -> list:
    """``size`` runs of ``method`` (seeds 0..size-1) on the tiny model: 2-D data, one hidden layer
    of 8, latent 2, the method's own networks 8 wide (compute about zero, as on a launch-bound GPU)."""
    from ...config import ModelConfig
    from ...discovery import METHODS
    from ...ml.method import build_method

    fields = {f.name for f in dataclasses.fields(METHODS[method].Config)}
    hyperparameters = {k: v for k, v in TINY_HYPERPARAMETERS.items() if k in fields}
    methods = []
    for seed in range(size):
        torch.manual_seed(seed)
        methods.append(build_method(method, hyperparameters, ModelConfig(latent_dim=2, options={"hidden": [8]}),
                                    (2,)).to(device))
    return methods


def _host_step(method: str, size: int, device: torch.device, batch: int):
    """A callable taking ``HOST_STEPS`` more optimiser steps of a pack of ``size`` runs of ``method``
    on a tiny model (2-D data, one hidden layer of 8, latent 2, the method's own networks 8 wide:
    compute about zero, as on a launch-bound GPU), through the trainer's own step (alone: the
    method's ``training_step``)."""
    import dataclasses

    from ...ml.method import TrainingProgress
    from ...ml.run_data import RunData
    from ...ml.train import make_step

    methods = tiny_methods(method, size, device)
    x = torch.randn(size, batch, 2, generator=torch.Generator().manual_seed(0)).to(device)
    noise = [torch.Generator(device).manual_seed(100 + k) for k in range(size)] if size > 1 else None
    torch.manual_seed(100)
    step = make_step(methods, TrainConfig(batch_size=batch), RunData(list(x)), [torch.Generator().manual_seed(k) for k in range(size)],
                     noise)
    taken = [0]

    def run() -> None:
        for _ in range(HOST_STEPS):
            step(x, TrainingProgress(0, taken[0], 10**9))
            taken[0] += 1

    run()  # the first step records the noise tape and checks the loss: not timed
    return run


def bench_pack_host(settings: Settings, device: torch.device, clock: Clock) -> dict[str, Any]:
    """Seconds per optimiser step of one run and of packs of K runs of a tiny model (the host's
    cost per step, which bounds a launch-bound GPU), interleaved; ``ratio`` = t(pack of K) / t(one
    run), the median of the paired ratios (1.0: a pack costs what one run costs, K: no gain)."""
    sizes = [k for k in settings.pack_sizes if k != 1]
    out: dict[str, Any] = {"model": "mlp hidden [8], latent 2, 2-D data, method networks 8 wide", "batch_size": 8, "steps": HOST_STEPS,
                           "pack_sizes": sizes, "targets": {str(k): v for k, v in HOST_TARGETS.items()}, "methods": {},
                           "note": "ratio = seconds per step of a pack of K / of one run alone (the trainer's own steps)"}
    for method in settings.pack_methods:
        arms = {1: _host_step(method, 1, device, 8), **{k: _host_step(method, k, device, 8) for k in sizes}}
        times: dict[int, list[float]] = {k: [] for k in arms}
        for r in range(settings.repeats + 1):
            for k in rotate(list(arms), r):
                t0 = clock()
                arms[k]()
                times[k].append((clock() - t0) / HOST_STEPS)
        one = timed(times[1])
        out["methods"][method] = {str(k): {"step_s": median(timed(v)), "times_s": v,
                                           **({"ratio": median([b / a for a, b in zip(one, timed(v))])} if k > 1 else {})}
                                  for k, v in times.items()}
    return out


def format_pack_host(section: dict[str, Any]) -> list[str]:
    """The table lines of the pack_host section."""
    sizes = section["pack_sizes"]
    lines = ["", f"pack host cost per step ({section['model']}, batch {section['batch_size']}): "
                 f"ms per step of one run, and a pack's step / one run's (targets: "
                 + ", ".join(f"K={k} <= {v:g}x" for k, v in section["targets"].items()) + ")",
             f"  {'method':<12} {'one (ms)':>9} " + " ".join(f"{'K=' + str(k):>8}" for k in sizes)]
    for method, rows in section["methods"].items():
        lines.append(f"  {method:<12} {1e3 * rows['1']['step_s']:9.3f} "
                     + " ".join(f"{rows[str(k)]['ratio']:7.2f}x" for k in sizes))
    return lines


EVAL_EXAMPLES = 1000  # test examples of each run in the pack_eval section


def _eval_pack(method: str, size: int, device: torch.device, config, lockstep: bool):
    """A callable evaluating ``size`` runs of ``method`` on the tiny model of :func:`_host_step`
    (each on its own 2-D test split of :data:`EVAL_EXAMPLES`): in lockstep
    (:mod:`benchmark.evaluation.lockstep`, as a pack is) or one after another (as runs alone are)."""
    import functools

    from ...data.splits import DataSplit
    from ...evaluation.evaluate import evaluate
    from ...evaluation.lockstep import Lockstep

    methods = tiny_methods(method, size, device)
    splits = [DataSplit(torch.randn(EVAL_EXAMPLES, 2, generator=torch.Generator().manual_seed(k)).to(device),
                        torch.zeros(EVAL_EXAMPLES, dtype=torch.long, device=device)) for k in range(size)]

    def run() -> None:
        generators = [torch.Generator(device).manual_seed(k) for k in range(size)]
        if not lockstep:
            for m, split, g in zip(methods, splits, generators):
                evaluate(m, split, config, g)
            return
        batcher = Lockstep([m.model for m in methods])
        batcher.run([functools.partial(evaluate, batcher.method(k, m), split, config, g)
                     for k, (m, split, g) in enumerate(zip(methods, splits, generators))])

    return run


def bench_pack_eval(settings: Settings, device: torch.device, clock: Clock) -> dict[str, Any]:
    """Seconds to evaluate K runs of a tiny model in lockstep (a pack's evaluation: its model
    passes batched) and one after another (runs alone), interleaved, with the ``quick`` grid's
    evaluation settings; ``speed`` = t(one after another) / t(lockstep), the median of the paired
    ratios (1.0: packing the evaluation gains nothing)."""
    config = settings.grid_eval_config()
    sizes = [k for k in settings.pack_sizes if k != 1]
    out: dict[str, Any] = {"model": "mlp hidden [8], latent 2, 2-D data, method networks 8 wide",
                           "examples": EVAL_EXAMPLES, "eval": dataclasses.asdict(config), "pack_sizes": sizes,
                           "methods": {}, "note": "speed = seconds of K evaluations one after another / of K in lockstep"}
    for method in settings.pack_methods:
        rows: dict[str, Any] = {}
        for size in sizes:
            arms = {name: _eval_pack(method, size, device, config, name == "lockstep")
                    for name in ("one_after_another", "lockstep")}
            times: dict[str, list[float]] = {name: [] for name in arms}
            for r in range(settings.repeats + 1):
                for name in rotate(list(arms), r):
                    t0 = clock()
                    arms[name]()
                    times[name].append(clock() - t0)
            ratios = [a / b for a, b in zip(timed(times["one_after_another"]), timed(times["lockstep"]))]
            rows[str(size)] = {"seconds": {k: median(timed(v)) for k, v in times.items()}, "speed": median(ratios),
                               "ratios": ratios, "times_s": times}
        out["methods"][method] = rows
    return out


def format_pack_eval(section: dict[str, Any]) -> list[str]:
    """The table lines of the pack_eval section."""
    sizes = section["pack_sizes"]
    lines = ["", f"pack evaluation ({section['model']}, {section['examples']} test examples per run): seconds of K "
                 "evaluations one after another, and their speed-up in lockstep",
             f"  {'method':<12} " + " ".join(f"{'K=' + str(k) + ' (s)':>10} {'speed':>7}" for k in sizes)]
    for method, rows in section["methods"].items():
        lines.append(f"  {method:<12} " + " ".join(
            f"{rows[str(k)]['seconds']['one_after_another']:10.2f} {rows[str(k)]['speed']:6.2f}x" for k in sizes))
    return lines
