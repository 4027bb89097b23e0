"""The bench's ``packing`` section: K runs trained as one stacked model (``run --pack K``)
against the same K runs trained one after another, through the harness's own trainer.

For each of the paper's architectures (MLPs of 1 x 512 and 4 x 512, latent 32; conv64 on random 3 x 64 x 64
pixels, latent 64) and each packable method, one epoch of ``throughput_examples`` examples is timed
for a pack of K runs and for one run alone, interleaved; the speed of packing is
``K * t(one run) / t(pack of K)`` per repetition (median of the paired ratios), so 1.0 means
packing gains nothing and K means the pack costs what one run costs.
"""

from __future__ import annotations

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
