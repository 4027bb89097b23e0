"""Performance bench: the harness's speed measured against plain PyTorch, in one process.

``python -m benchmark bench`` (or ``python -m benchmark.bench``) measures, on the same model,
data and device:

- ``threads`` (CPU): the minimal loop at one thread against torch's thread count, which shows
  when a shared machine makes several OpenMP threads slower than one;
- ``throughput``: examples/s of the harness's training loop (:func:`benchmark.train.train`
  with a real method from :func:`benchmark.method.build_method`) against a minimal
  hand-written PyTorch loop with the same math (same MLP and initial weights, the ``vae``
  plugin's loss, same batch size, randperm slicing of an in-memory tensor), per MLP preset;
  also both loops with Adam's fused kernel, which is what a one-line optimiser change is worth;
- ``metrics``: the cost of each end-of-run metric at its default settings on the test split
  (encoding, active units, KL, MI, reconstruction, per-class, IW-NLL, decoder geometry, noise
  sensitivity), the runner's per-epoch curve points and its whole ``evaluate()`` (with the
  defaults and with the ``quick`` grid's ``[eval]`` table), relative to one training epoch,
  and the resulting evaluation share of the ``quick`` grid's training time;
- ``methods``: the cost per training step (and of ``evaluate()``) of every registered method
  relative to ``vae``;
- ``pythae``: pythae's published trainer (optional dependency) on the same encoder/decoder,
  data and batch size;
- ``seed_batching`` (stretch): S seeds of one configuration trained as one model batched with
  ``torch.func.vmap`` over stacked parameters, against S minimal loops one after another;
- ``compile`` (only with ``--compile``): ``torch.compile`` on the minimal loop.

Measurement discipline (the machine may be shared): the arms of a comparison are interleaved
(A B C A B C ...) in one process, the first repetition of every arm is a warm-up and is
dropped, and the ratio is the median of the per-repetition ratios (``ratio_of_medians`` is
reported too). Absolute times move with the load (recorded as ``os.getloadavg()`` before and
after); the ratios are what to read.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..run.evaluate import evaluate

BENCH_VERSION = 1
DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, before --threads
THROUGHPUT_TARGET = 0.95  # harness / minimal examples per second, MLP presets (issue: fast enough)
EVAL_SHARE_TARGET = 0.20  # default metrics' evaluation time / the quick grid's training time


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Preset:
    """An MLP model preset (gaussian likelihood, ReLU, like the grids)."""

    name: str
    hidden: tuple[int, ...]
    latent_dim: int

    def model_config(self):
        from ..config import ModelConfig
        return ModelConfig(arch="mlp", latent_dim=self.latent_dim, likelihood="gaussian",
                           posterior_variance="logvar",
                           options={"hidden": list(self.hidden), "activation": "relu"})


FULL_PRESETS = (Preset("mlp-2x512", (512, 512), 32), Preset("mlp-1x512", (512,), 32))
QUICK_PRESETS = (Preset("mlp-2x64", (64, 64), 8), Preset("mlp-1x64", (64,), 8))


@dataclass
class Settings:
    device: str = "auto"
    repeats: int = 5  # timed repetitions per arm, after one warm-up (x4 for the short throughput epochs)
    throughput_examples: int = 2560  # examples per epoch in the throughput / seed-batching comparisons
    eval_repeats: int = 3  # repetitions of the (long) evaluation measurements (odd: a robust median)
    quick: bool = False
    train_size: int = 20000  # the quick grid's training subset
    test_size: int | None = None  # None: the whole test split (10000 for Fashion-MNIST)
    batch_size: int = 128
    data: str = "fashion-mnist"  # or "synthetic"
    data_root: str | None = None
    sections: tuple[str, ...] = ("threads", "throughput", "metrics", "methods", "pythae", "seed_batching")
    method_steps: int = 20  # optimiser steps per method and repetition
    seed_batch: int = 4  # seeds trained as one batched model
    compile_modes: tuple[str, ...] = ()
    threads: int | None = None
    presets: tuple[Preset, ...] = FULL_PRESETS
    # EvalConfig fields to change (--quick's cheap settings, --eval-set's what-ifs); none by default
    eval_overrides: dict = field(default_factory=dict)
    # hyperparameters set on every method whose Config has them (quick mode: small LID networks)
    method_overrides: dict = field(default_factory=dict)

    @classmethod
    def quick_mode(cls, **overrides) -> "Settings":
        """Tiny sizes, synthetic data, one thread, cheap evaluation settings: checks that every
        section runs and reports (seconds), says nothing about speed."""
        values = dict(quick=True, repeats=2, eval_repeats=1, throughput_examples=256, train_size=256,
                      test_size=128, batch_size=64, data="synthetic",
                      method_steps=2, seed_batch=2, presets=QUICK_PRESETS, threads=1,
                      eval_overrides={"nll_samples": 4, "nll_examples": 16, "geometry_points": 4,
                                      "noise_points": 4, "noise_draws": 2},
                      method_overrides={"hidden_latent": 16, "hidden_data": 16})
        values.update(overrides)
        return cls(**values)

    def eval_config(self):
        """The default :class:`benchmark.config.EvalConfig` (with ``eval_overrides`` it has)."""
        from ..config import EvalConfig

        names = {f.name for f in dataclasses.fields(EvalConfig)}
        return EvalConfig(**{k: v for k, v in self.eval_overrides.items() if k in names})

    def grid_eval_config(self):
        """The ``quick`` grid's evaluation settings (its ``[eval]`` table over the defaults), with
        ``eval_overrides`` applied; the defaults when the grid cannot be read."""
        runs = _quick_grid_runs()
        if not runs:
            return self.eval_config()
        names = {f.name for f in dataclasses.fields(type(runs[0].eval))}
        return dataclasses.replace(runs[0].eval, **{k: v for k, v in self.eval_overrides.items() if k in names})

    def hyperparameters(self, method: str) -> dict[str, Any]:
        from ..discovery import METHODS

        names = {f.name for f in dataclasses.fields(METHODS[method].Config)}
        return {k: v for k, v in self.method_overrides.items() if k in names}


ALL_SECTIONS = ("threads", "throughput", "metrics", "methods", "pythae", "seed_batching", "compile")


# ---------------------------------------------------------------------------------------------
# Small helpers


class Clock:
    """``perf_counter`` that waits for queued GPU work first, so intervals are honest on CUDA."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def _timed(samples: list[float]) -> list[float]:
    """Drop the warm-up repetition."""
    return samples[1:] if len(samples) > 1 else samples


def compare(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """Speed of arm A relative to arm B from paired times: ``t_B / t_A`` per repetition.

    ``numerator`` / ``denominator`` are the times of A and B, repetition by repetition (the
    first is a warm-up and dropped). A ratio above 1 means A is faster.
    """
    a, b = _timed(numerator), _timed(denominator)
    pairs = [tb / ta for ta, tb in zip(a, b) if ta > 0]
    return {"ratio": _median(pairs), "ratio_of_medians": _median(b) / _median(a) if a and b else math.nan,
            "ratio_min": min(pairs) if pairs else math.nan, "ratio_max": max(pairs) if pairs else math.nan}


def cost(numerator: list[float], denominator: list[float], warmup: bool = True) -> float:
    """Median over repetitions of ``t_A / t_B`` (a relative cost: above 1 means A is slower);
    ``warmup``: the first repetition is a warm-up and is dropped."""
    a, b = (_timed(numerator), _timed(denominator)) if warmup else (numerator, denominator)
    return _median([ta / tb for ta, tb in zip(a, b) if tb > 0])


def _rotate(items: list, k: int) -> list:
    k %= max(len(items), 1)
    return items[k:] + items[:k]


def _finite(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU model, cores, torch threads and version, GPU, load, date (and `date`'s own text)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        date_text = subprocess.run(["date"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        date_text = None
    info: dict[str, Any] = {
        "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "device": str(device), "gpu": None, "load_avg": _load(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "date_text": date_text,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    try:
        from ..run.provenance import git_commit
        info["git"] = git_commit()
    except Exception:  # provenance is informative only
        info["git"] = None
    return info


def load_data(settings: Settings, device: torch.device):
    """Train subset x [N, *shape] and the test split (a :class:`benchmark.data.DataSplit`, labels
    included) on ``device``; synthetic tensors of the same shape when the data set is missing or
    ``settings.data == "synthetic"``. Returns (train x, test split, description)."""
    from ..data.splits import DataSplit

    test_size = settings.test_size
    if settings.data != "synthetic":
        from ..data.catalog import load_dataset
        from ..errors import BenchmarkError
        try:
            data = load_dataset(settings.data, data_root=settings.data_root, seed=0,
                                train_size=settings.train_size, test_size=test_size, device=device)
            return data.train.x, data.test, f"{settings.data} (train {len(data.train)}, test {len(data.test)})"
        except BenchmarkError as exc:
            note = f"synthetic ({settings.data} not available: {str(exc).splitlines()[0]})"
    else:
        note = "synthetic"
    g = torch.Generator().manual_seed(0)
    n_test = test_size or 10000
    train = torch.rand((settings.train_size, 1, 28, 28), generator=g)
    test = DataSplit(torch.rand((n_test, 1, 28, 28), generator=g), torch.randint(10, (n_test,), generator=g))
    return train.to(device), test.to(device), f"{note} [N, 1, 28, 28] uniform"


def fused_adam_supported(device: torch.device) -> bool:
    """Adam(fused=True) exists for CUDA since torch 2.0 and for CPU since 2.4."""
    try:
        torch.optim.Adam([torch.zeros(1, device=device, requires_grad=True)], fused=True)
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# The minimal hand-written loop (the baseline)


class MinimalVAE(nn.Module):
    """The ``vae`` plugin's math written out: MLP encoder -> (mu, logvar), z = mu + sigma eps,
    MLP decoder, loss = mean SSE + mean KL (gaussian likelihood, sums over pixels / latents)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], latent_dim: int):
        super().__init__()

        def stack(sizes: list[int]) -> nn.Sequential:
            layers: list[nn.Module] = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers.append(nn.Linear(a, b))
                if i < len(sizes) - 2:
                    layers.append(nn.ReLU())
            return nn.Sequential(*layers)

        self.enc = stack([in_dim, *hidden, 2 * latent_dim])
        self.dec = stack([latent_dim, *reversed(hidden), in_dim])

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        mu, logvar = self.enc(flat).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        rec = (flat - self.dec(z)).pow(2).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return rec.mean() + kl.mean()

    @classmethod
    def like(cls, model: nn.Module, preset: Preset, in_dim: int) -> "MinimalVAE":
        """Same architecture and the same initial weights as the harness's ``model``."""
        minimal = cls(in_dim, preset.hidden, preset.latent_dim)
        src = list(model.parameters())
        dst = list(minimal.parameters())
        if [p.shape for p in src] != [p.shape for p in dst]:
            raise RuntimeError("the minimal loop's MLP does not match the harness's model")
        with torch.no_grad():
            for d, s in zip(dst, src):
                d.copy_(s)
        return minimal.to(src[0].device)


def minimal_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, batch_size: int,
                  order: torch.Generator) -> float:
    """One epoch of the plain loop: permutation, slice, forward, backward, step; mean loss."""
    model.train()
    n = x.shape[0]
    perm = torch.randperm(n, generator=order).to(x.device)
    total = torch.zeros((), device=x.device)
    for start in range(0, n, batch_size):
        batch = x[perm[start:start + batch_size]]
        loss = model(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * batch.shape[0]
    return float(total) / n


def _harness_method(preset: Preset, shape: tuple[int, ...], device: torch.device, name: str = "vae",
                    seed: int = 0, hyperparameters: dict[str, Any] | None = None):
    from ..ml.method import build_method
    torch.manual_seed(seed)
    return build_method(name, hyperparameters or {}, preset.model_config(), shape).to(device)


def harness_epochs(method, x: Tensor, batch_size: int, order: torch.Generator, fused_adam: bool = False
                   ) -> Callable[[], Any]:
    """A callable running one more epoch of the harness's loop on ``method`` with one persistent
    optimiser (:class:`benchmark.ml.train.Trainer`; ``fused_adam``: its optimiser replaced by
    Adam's fused kernel)."""
    from ..config import TrainConfig
    from ..ml.train import Trainer

    config = TrainConfig(epochs=10**9, batch_size=batch_size)
    trainer = Trainer(method, x, config, order)
    if fused_adam:
        trainer.optimizer = torch.optim.Adam(method.parameters(), lr=config.lr, fused=True)
    return trainer.run_epoch


def _interleaved_with_harness(method, x: Tensor, batch_size: int, repeats: int, clock: Clock,
                              arms: dict[str, Callable[[int], Any]]) -> dict[str, list[float]]:
    """Run the harness's ``train()`` for ``repeats + 1`` epochs and time each of ``arms``
    (callables of the repetition index) between its epochs, from its ``on_epoch`` callback.

    The harness's epoch time is measured from the callback's exit to its next entry, so it is
    one real ``train()`` call (one optimiser, the loss-part sums, the divergence check)."""
    from ..config import TrainConfig
    from ..ml.train import train

    times: dict[str, list[float]] = {"harness": [], **{k: [] for k in arms}}
    mark = [clock()]

    def on_epoch(epoch: int, _means: dict[str, float]) -> None:
        times["harness"].append(clock() - mark[0])
        for name in _rotate(list(arms), epoch):
            t0 = clock()
            arms[name](epoch)
            times[name].append(clock() - t0)
        mark[0] = clock()

    order = torch.Generator().manual_seed(1)
    train(method, x, TrainConfig(epochs=repeats + 1, batch_size=batch_size), order, on_epoch)
    return times


# ---------------------------------------------------------------------------------------------
# Sections


def bench_throughput(settings: Settings, x: Tensor, device: torch.device, clock: Clock) -> dict[str, Any]:
    """Harness vs minimal loop (and both with fused Adam), per preset: ``4 * repeats``
    short epochs of ``throughput_examples`` each, interleaved, so that every comparison is made
    within a second or so and a changing machine load hits both arms alike."""
    x = x[: settings.throughput_examples]
    shape, n, bs = tuple(x.shape[1:]), x.shape[0], settings.batch_size
    repeats = 4 * settings.repeats
    in_dim = math.prod(shape)
    fused = fused_adam_supported(device)
    out: dict[str, Any] = {"batch_size": bs, "examples_per_epoch": n, "epochs_timed": repeats,
                           "target": THROUGHPUT_TARGET, "fused_adam_supported": fused, "presets": {}}
    for preset in settings.presets:
        method = _harness_method(preset, shape, device)
        minimal = MinimalVAE.like(method.model, preset, in_dim)
        opt = torch.optim.Adam(minimal.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(2)
        arms: dict[str, Callable[[int], Any]] = {
            "minimal": lambda _r, m=minimal, o=opt, g=gen: minimal_epoch(m, o, x, bs, g)}
        if fused:
            method_f = _harness_method(preset, shape, device)
            epoch_f = harness_epochs(method_f, x, bs, torch.Generator().manual_seed(1), fused_adam=True)
            arms["harness_fused_adam"] = lambda _r, f=epoch_f: f()
        if fused:
            minimal_f = MinimalVAE.like(method.model, preset, in_dim)
            opt_f = torch.optim.Adam(minimal_f.parameters(), lr=1e-3, fused=True)
            gen_f = torch.Generator().manual_seed(2)
            arms["minimal_fused_adam"] = lambda _r, m=minimal_f, o=opt_f, g=gen_f: minimal_epoch(m, o, x, bs, g)
        times = _interleaved_with_harness(method, x, bs, repeats, clock, arms)
        entry: dict[str, Any] = {
            "hidden": list(preset.hidden), "latent_dim": preset.latent_dim,
            "parameters": sum(p.numel() for p in method.parameters()),
            "epoch_s": {k: _median(_timed(v)) for k, v in times.items()},
            "examples_per_s": {k: n / _median(_timed(v)) for k, v in times.items()},
            "times_s": times,
        }
        entry["harness_vs_minimal"] = compare(times["harness"], times["minimal"])
        entry["meets_target"] = entry["harness_vs_minimal"]["ratio"] >= THROUGHPUT_TARGET
        if fused:
            entry["fused_adam_vs_minimal"] = compare(times["minimal_fused_adam"], times["minimal"])
        if "harness_fused_adam" in times:
            entry["harness_fused_adam_vs_harness"] = compare(times["harness_fused_adam"], times["harness"])
        out["presets"][preset.name] = entry
    return out


def _quick_grid_runs():
    try:
        from ..grid import load_grid
        return load_grid("quick").expand()
    except Exception:  # the estimate is optional
        return []


def metric_arms(method, split, config, device: torch.device, grid_config=None) -> dict[str, Callable[[], Any]]:
    """One callable per default end-of-run metric (those the current :class:`EvalConfig` switches
    on), computed the way the runner computes it, plus the runner's curve points and its whole
    ``evaluate()``. ``encode_test_split`` must run first: the posterior metrics use its output."""
    from ..ml import metrics
    from ..run.evaluate import Evaluation, encode_all, iw_log_px, latent_summary, reconstruction_metrics

    model, x = method.model, split.x
    gen = torch.Generator(device).manual_seed(3)
    state: dict[str, Tensor] = {}

    def encode():
        method.eval()
        state["mu"], state["logvar"] = encode_all(method, x)

    def kl():
        kl_values = metrics.kl_to_prior(state["mu"], state["logvar"])
        out = float(kl_values.mean())
        metrics.kl_quantiles(kl_values)
        return out

    def per_class():
        metrics.active_units_per_class(state["mu"], split.y, config.au_threshold)
        metrics.kl_per_class(metrics.kl_to_prior(state["mu"], state["logvar"]), split.y)

    def reconstruction():  # rec, neg_elbo and mse: one posterior sample per example
        out = Evaluation(metrics={"kl": 0.0})
        reconstruction_metrics(model, x, state["mu"], state["logvar"], gen, out)
        return out.metrics["rec"]

    def iw_nll():
        return iw_log_px(model, x[:config.nll_examples], config.nll_samples, gen)

    def curve_point(with_mi: bool):
        method.eval()
        mu, logvar = encode_all(method, x)
        return latent_summary(mu, logvar, config, gen) if with_mi else latent_summary(mu, logvar, config)

    arms: dict[str, Callable[[], Any]] = {
        "encode_test_split": encode,
        "active_units": lambda: metrics.active_units(state["mu"], config.au_threshold),
        "kl": kl,
        "mutual_information": lambda: metrics.mutual_information(
            state["mu"], state["logvar"], mixture=config.mi_mixture, batch_size=config.mi_batch_size, generator=gen),
        "reconstruction": reconstruction,
    }
    arms["per_class"] = per_class
    if getattr(config, "nll_samples", 0):
        arms["iw_nll"] = iw_nll
    if getattr(config, "geometry_points", 0):
        arms["decoder_geometry"] = lambda: metrics.decoder_geometry(
            model.decode_mean, state["mu"][:config.geometry_points], generator=gen,
            pair_scale=config.pair_scale, batch_size=64)
    if getattr(config, "noise_points", 0):
        arms["noise_sensitivity"] = lambda: metrics.noise_sensitivity(
            model.decode_mean, state["mu"][:config.noise_points], draws=config.noise_draws, generator=gen)
    arms["curve_point"] = lambda: curve_point(False)
    if getattr(config, "mi_curve_every", 0):
        arms["curve_point_with_mi"] = lambda: curve_point(True)
    arms["evaluate"] = lambda: evaluate(method, split, config, gen)
    if grid_config is not None and grid_config != config:
        arms["evaluate_quick_grid"] = lambda: evaluate(method, split, grid_config, gen)
    return arms


def bench_metrics(settings: Settings, x: Tensor, split, device: torch.device, clock: Clock) -> dict[str, Any]:
    """Each default metric on the test split, interleaved with epochs of the harness's loop."""

    preset = settings.presets[0]
    method = _harness_method(preset, tuple(x.shape[1:]), device)
    config = settings.eval_config()
    grid_config = settings.grid_eval_config()
    arms = metric_arms(method, split, config, device, grid_config)
    round_times: dict[str, list[float]] = {name: [] for name in arms}
    rest = [name for name in arms if name != "encode_test_split"]

    def one_round(r: int) -> None:
        with torch.no_grad():  # as in evaluate(); decoder_geometry switches gradients on itself
            for name in ["encode_test_split", *_rotate(rest, r)]:
                t0 = clock()
                arms[name]()
                round_times[name].append(clock() - t0)

    times = _interleaved_with_harness(method, x, settings.batch_size, settings.eval_repeats, clock,
                                      {"metrics": one_round})
    epoch = times["harness"]
    per_metric = {name: {"seconds": _median(_timed(t)), "per_epoch": cost(t, epoch)} for name, t in round_times.items()}
    out: dict[str, Any] = {
        "model": preset.name, "test_examples": len(split), "train_examples": x.shape[0],
        "settings": asdict(config), "quick_grid_settings": asdict(grid_config),
        "eval_overrides": dict(settings.eval_overrides),
        "epoch_s": _median(_timed(epoch)), "metrics": per_metric,
        "times_s": {"epoch": epoch, **round_times},
    }
    out["quick_grid"] = quick_grid_share(out, None)
    return out


def quick_grid_share(metrics_section: dict[str, Any], methods_section: dict[str, Any] | None) -> dict[str, Any]:
    """Estimated evaluation share of the ``quick`` grid's training time, from the measured costs.

    Per run: training = epochs x (seconds per example-epoch x train_size) x the method's step
    cost relative to vae; end-of-run evaluation = ``evaluate()`` with the grid's ``[eval]``
    settings (``evaluate_quick_grid``, or ``evaluate`` when they are the defaults) x the method's
    evaluate cost relative to vae; curve points = one per curve epoch (the runner's rule: every
    ``curve_every`` epochs, the last epoch, and every ``mi_curve_every`` epochs with MI).
    Method ratios are 1 unless the methods section ran.
    """
    runs = _quick_grid_runs()
    if not runs:
        return {"available": False}
    measured = metrics_section["metrics"]
    per_example_epoch = metrics_section["epoch_s"] / metrics_section["train_examples"]
    test_n = metrics_section["test_examples"]
    curve = measured["curve_point"]["seconds"]
    curve_mi = measured.get("curve_point_with_mi", measured["curve_point"])["seconds"]
    evaluate_vae = measured.get("evaluate_quick_grid", measured["evaluate"])["seconds"]
    method_cost = (methods_section or {}).get("methods", {})
    overrides = metrics_section.get("eval_overrides", {})  # what-if settings replace the grid's
    train_total = eval_total = curve_total = 0.0
    for run in runs:
        scale = (run.dataset.test_size or 10000) / test_n  # linear, except MI (N^2): exact at N = 10000
        costs = method_cost.get(run.method, {})
        step_ratio = costs.get("step_cost_vs_vae") or 1.0
        eval_ratio = costs.get("evaluate_cost_vs_vae") or 1.0
        train_total += run.train.epochs * per_example_epoch * (run.dataset.train_size or 60000) * step_ratio
        eval_total += evaluate_vae * scale * eval_ratio
        curves = {"curve_every": run.eval.curve_every, "mi_curve_every": getattr(run.eval, "mi_curve_every", 0),
                  **{k: v for k, v in overrides.items() if k in ("curve_every", "mi_curve_every")}}
        every, mi_every, last = curves["curve_every"], curves["mi_curve_every"], run.train.epochs
        for e in range(1, last + 1):
            with_mi = bool(mi_every) and e % mi_every == 0
            if e % every == 0 or e == last or with_mi:
                curve_total += (curve_mi if with_mi else curve) * scale
    share = (eval_total + curve_total) / train_total
    return {
        "available": True, "runs": len(runs), "method_ratios_used": bool(method_cost), "eval_overrides": overrides,
        "estimated_train_s": train_total, "estimated_evaluate_s": eval_total, "estimated_curve_s": curve_total,
        "evaluate_share": eval_total / train_total, "evaluate_and_curves_share": share,
        "target": EVAL_SHARE_TARGET, "meets_target": share < EVAL_SHARE_TARGET,
        "note": "training excludes the curve points (the runner times them inside train())",
    }


def bench_methods(settings: Settings, x: Tensor, split, device: torch.device, clock: Clock) -> dict[str, Any]:
    """Every registered method: ``train()`` over ``method_steps`` steps (every round, the first
    a warm-up) and ``evaluate()`` with the quick grid's evaluation settings (the first
    ``eval_repeats`` rounds, all kept: it takes seconds), interleaved round-robin; costs relative
    to ``vae``, default hyperparameters, the first preset's model."""
    from ..discovery import METHODS

    preset = settings.presets[0]
    shape, bs = tuple(x.shape[1:]), settings.batch_size
    steps = settings.method_steps
    subset = x[: steps * bs]
    built, failed = {}, {}
    for name in METHODS.names():
        try:
            built[name] = _harness_method(preset, shape, device, name, hyperparameters=settings.hyperparameters(name))
        except Exception as exc:  # a method that cannot build this model is reported, not fatal
            failed[name] = f"{type(exc).__name__}: {exc}"
    config = settings.grid_eval_config()  # what the quick-grid estimate needs
    train_t: dict[str, list[float]] = {k: [] for k in built}
    eval_t: dict[str, list[float]] = {k: [] for k in built}
    epochs = {k: harness_epochs(m, subset, bs, torch.Generator().manual_seed(4)) for k, m in built.items()}
    gen = torch.Generator(device).manual_seed(5)
    eval_rounds = settings.eval_repeats
    for r in range(settings.repeats + 1):
        for name in _rotate(list(built), r):
            method = built[name]
            t0 = clock()
            epochs[name]()
            train_t[name].append(clock() - t0)
            if r < eval_rounds:
                t0 = clock()
                evaluate(method, split, config, gen)
                eval_t[name].append(clock() - t0)
    base = "vae" if "vae" in built else next(iter(built), None)
    out: dict[str, Any] = {"model": preset.name, "steps": steps, "batch_size": bs, "baseline": base,
                           "persistent_optimizer": True,
                           "eval_settings": asdict(config),
                           "test_examples": len(split), "methods": {}, "failed": failed,
                           "times_s": {"train": train_t, "evaluate": eval_t}}
    for name in built:
        out["methods"][name] = {
            "step_ms": 1000 * _median(_timed(train_t[name])) / subset.shape[0] * bs,
            "evaluate_s": _median(eval_t[name]),
            "step_cost_vs_vae": cost(train_t[name], train_t[base]),
            "evaluate_cost_vs_vae": cost(eval_t[name], eval_t[base], warmup=False),
            "parameters": sum(p.numel() for p in built[name].parameters()),
        }
    return out


def bench_threads(settings: Settings, x: Tensor, device: torch.device, clock: Clock) -> dict[str, Any]:
    """CPU only: the minimal loop at 1 thread against torch's thread count, interleaved. On a
    machine shared with other jobs, OpenMP threads that spin-wait for each other can make several
    threads far slower than one (see OMP_WAIT_POLICY); this section makes that visible."""
    threads = max(DEFAULT_THREADS, torch.get_num_threads())
    out: dict[str, Any] = {"threads": threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                           "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if device.type != "cpu" or threads < 2:
        out["skipped"] = "needs the CPU and more than one torch thread"
        return out
    preset = settings.presets[0]
    bs, in_dim = settings.batch_size, math.prod(x.shape[1:])
    subset = x[: min(x.shape[0], 10 * bs)]  # short: several threads can be very slow here
    torch.manual_seed(0)
    model = MinimalVAE(in_dim, preset.hidden, preset.latent_dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(7)
    times: dict[str, list[float]] = {"1": [], str(threads): []}
    before = torch.get_num_threads()
    try:
        for r in range(settings.repeats + 1):
            for count in _rotate([1, threads], r):
                torch.set_num_threads(count)
                t0 = clock()
                minimal_epoch(model, opt, subset, bs, gen)
                times[str(count)].append(clock() - t0)
    finally:
        torch.set_num_threads(before)
    out.update({"model": preset.name, "examples": subset.shape[0],
                "epoch_s": {k: _median(_timed(v)) for k, v in times.items()},
                "threads_vs_one": compare(times[str(threads)], times["1"]), "times_s": times})
    return out


def _pythae_wrappers():
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self, body: nn.Module):
            BaseEncoder.__init__(self)
            self.body = body

        def forward(self, x):
            mu, logvar = self.body(x)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self, body: nn.Module):
            BaseDecoder.__init__(self)
            self.body = body

        def forward(self, z):
            return ModelOutput(reconstruction=self.body(z))

    return Encoder, Decoder


def bench_pythae(settings: Settings, x: Tensor, device: torch.device, clock: Clock) -> dict[str, Any]:
    """pythae's BaseTrainer (as published: its DataLoader over a BaseDataset on the CPU, its
    callbacks and progress bar) on copies of the harness's encoder/decoder, interleaved with
    epochs of the harness (``4 * repeats`` epochs of ``throughput_examples``, as the throughput
    section). The ratio is pythae's examples/s over the harness's."""
    try:
        import logging

        import pythae
        from pythae.data.datasets import BaseDataset
        from pythae.models import VAE as PythaeVAE
        from pythae.models import VAEConfig
        from pythae.trainers import BaseTrainer, BaseTrainerConfig
    except Exception as exc:
        return {"available": False,
                "reason": f"pythae not importable ({type(exc).__name__}: {exc}); "
                          "pip install -r requirements-bench.txt to run this comparison"}
    version = getattr(pythae, "__version__", None)
    try:
        import importlib.metadata
        version = importlib.metadata.version("pythae")
    except Exception:
        pass
    for name in ("pythae", "pythae.trainers.base_trainer.base_trainer", "pythae.pipelines.training",
                 "pythae.models.base.base_model"):
        logging.getLogger(name).setLevel(logging.WARNING)
    preset = settings.presets[0]
    x = x[: settings.throughput_examples]
    shape, bs = tuple(x.shape[1:]), settings.batch_size
    method = _harness_method(preset, shape, device)
    Encoder, Decoder = _pythae_wrappers()
    model = PythaeVAE(VAEConfig(input_dim=shape, latent_dim=preset.latent_dim, reconstruction_loss="mse"),
                      encoder=Encoder(copy.deepcopy(method.model.encoder)),
                      decoder=Decoder(copy.deepcopy(method.model.decoder)))
    x_cpu = x.detach().cpu()
    with tempfile.TemporaryDirectory(prefix="bench-pythae-") as tmp, open(os.devnull, "w") as null, \
            contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
        config = BaseTrainerConfig(output_dir=tmp, per_device_train_batch_size=bs, per_device_eval_batch_size=bs,
                                   num_epochs=1, learning_rate=1e-3, optimizer_cls="Adam",
                                   no_cuda=device.type != "cuda", seed=0)
        trainer = BaseTrainer(model=model, train_dataset=BaseDataset(x_cpu, torch.zeros(x_cpu.shape[0])),
                              training_config=config)
        trainer.prepare_training()
        times = _interleaved_with_harness(method, x, bs, 4 * settings.repeats, clock,
                                          {"pythae": lambda r: trainer.train_step(r + 1)})
        # One whole published train() (1 epoch: setup, the epoch, best-model copy, final save).
        t0 = clock()
        trainer.train()
        whole = clock() - t0
    n = x.shape[0]
    return {
        "available": True, "version": version, "device": trainer.device, "model": preset.name,
        "batch_size": bs, "examples_per_epoch": x.shape[0],
        "data_on": "cpu (pythae's DataLoader; batches moved per step on cuda)",
        "loss_note": "pythae's 'mse' loss is 0.5 * SSE + KL; the harness's gaussian is SSE + KL (same work)",
        "epoch_s": {k: _median(_timed(v)) for k, v in times.items()},
        "examples_per_s": {k: n / _median(_timed(v)) for k, v in times.items()},
        "pythae_vs_harness": compare(times["pythae"], times["harness"]),
        "train_one_epoch_whole_s": whole,
        "per_run_overhead_s": whole - _median(_timed(times["pythae"])),
        "times_s": times,
    }


def _batched_step_fn(template: nn.Module, randomness: str = "different"):
    """``loss(params, x [S, B, ...]) -> [S]``: the minimal loss vmapped over stacked params
    (``randomness="different"``: each seed draws its own noise)."""
    from torch.func import functional_call, vmap

    base = copy.deepcopy(template).to("meta")

    def one(params, xb):
        return functional_call(base, params, (xb,))

    return vmap(one, in_dims=(0, 0), randomness=randomness)


def bench_seed_batching(settings: Settings, x: Tensor, device: torch.device, clock: Clock) -> dict[str, Any]:
    """S seeds of one config as one model (torch.func.stack_module_state + vmap; one Adam over
    the stacked parameters, which is S independent Adams since Adam is elementwise) against the
    S minimal loops run one after another. Each seed has its own batch order and noise."""
    from torch.func import stack_module_state

    preset = settings.presets[0]
    x = x[: settings.throughput_examples]
    s, bs, n = settings.seed_batch, settings.batch_size, x.shape[0]
    in_dim = math.prod(x.shape[1:])
    models = []
    for seed in range(s):
        torch.manual_seed(seed)
        models.append(MinimalVAE(in_dim, preset.hidden, preset.latent_dim).to(device))
    params, _buffers = stack_module_state(models)
    leaves = list(params.values())
    opt_b = torch.optim.Adam(leaves, lr=1e-3)
    loss_fn = _batched_step_fn(models[0])
    gens = [torch.Generator().manual_seed(10 + i) for i in range(s)]

    def batched_epoch(_r) -> float:
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # [S, N]
        total = torch.zeros(s, device=device)
        for start in range(0, n, bs):
            batch = x[perms[:, start:start + bs]]  # [S, B, *shape]
            losses = loss_fn(params, batch)
            opt_b.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt_b.step()
            total += losses.detach() * batch.shape[1]
        return float(total.sum()) / (n * s)

    seq_models = [copy.deepcopy(m) for m in models]
    seq_opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in seq_models]
    seq_gens = [torch.Generator().manual_seed(10 + i) for i in range(s)]

    def sequential(_r) -> None:
        for m, o, g in zip(seq_models, seq_opts, seq_gens):
            minimal_epoch(m, o, x, bs, g)

    times: dict[str, list[float]] = {"batched": [], "sequential": []}
    arms = {"batched": batched_epoch, "sequential": sequential}
    for r in range(2 * settings.repeats + 1):
        for name in _rotate(list(arms), r):
            t0 = clock()
            arms[name](r)
            times[name].append(clock() - t0)
    speed = compare(times["batched"], times["sequential"])
    return {"model": preset.name, "seeds": s, "batch_size": bs, "examples_per_epoch": n,
            "epoch_s": {k: _median(_timed(v)) for k, v in times.items()},
            "speedup": speed, "times_s": times,
            "note": "speedup = time of S sequential minimal epochs / one batched epoch of S seeds"}


def bench_compile(settings: Settings, x: Tensor, device: torch.device, clock: Clock) -> dict[str, Any]:
    """torch.compile of the minimal model's forward (loss) in each mode against eager."""
    preset = settings.presets[0]
    bs = settings.batch_size
    in_dim = math.prod(x.shape[1:])
    out: dict[str, Any] = {"model": preset.name, "batch_size": bs, "modes": {}}
    for mode in settings.compile_modes:
        torch.manual_seed(0)
        eager = MinimalVAE(in_dim, preset.hidden, preset.latent_dim).to(device)
        compiled_module = copy.deepcopy(eager)
        opt_e = torch.optim.Adam(eager.parameters(), lr=1e-3)
        opt_c = torch.optim.Adam(compiled_module.parameters(), lr=1e-3)
        try:
            compiled = torch.compile(compiled_module, mode=mode)
            t0 = clock()
            minimal_epoch(compiled, opt_c, x[: 4 * bs], bs, torch.Generator().manual_seed(0))  # compile
            compile_s = clock() - t0
        except Exception as exc:  # no compiler, unsupported backend...
            out["modes"][mode] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            continue
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        arms = {"eager": (eager, opt_e, torch.Generator().manual_seed(6)),
                "compiled": (compiled, opt_c, torch.Generator().manual_seed(6))}
        for r in range(settings.repeats + 1):
            for name in _rotate(list(arms), r):
                m, o, g = arms[name]
                t0 = clock()
                minimal_epoch(m, o, x, bs, g)
                times[name].append(clock() - t0)
        out["modes"][mode] = {"ok": True, "compile_s": compile_s,
                              "epoch_s": {k: _median(_timed(v)) for k, v in times.items()},
                              "compiled_vs_eager": compare(times["compiled"], times["eager"]), "times_s": times}
    return out


# ---------------------------------------------------------------------------------------------
# Driver, table, command line


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
    program = ("python -m benchmark" if first.endswith("__main__.py")
               else "python -m benchmark.bench" if first.endswith("bench.py") else first)
    return " ".join([program, *sys.argv[1:]])


def _run_bench(settings: Settings, log: Callable[[str], None]) -> dict[str, Any]:
    from ..device import resolve_device

    device = resolve_device(settings.device)
    clock = Clock(device)
    started = time.perf_counter()
    result: dict[str, Any] = {"bench_version": BENCH_VERSION, "machine": machine_info(device),
                              "settings": _finite(asdict(settings)), "command": _command_line(),
                              "sections": {}, "errors": {}}
    x, split, source = load_data(settings, device)
    result["data"] = source
    log(f"bench: {source} on {device} ({result['machine']['cpu']}, {torch.get_num_threads()} threads, "
        f"load {result['machine']['load_avg']}); {settings.repeats} timed repetitions + 1 warm-up")
    sections = [s for s in ALL_SECTIONS if s in settings.sections or (s == "compile" and settings.compile_modes)]
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "throughput": lambda: bench_throughput(settings, x, device, clock),
        "threads": lambda: bench_threads(settings, x, device, clock),
        "metrics": lambda: bench_metrics(settings, x, split, device, clock),
        "methods": lambda: bench_methods(settings, x, split, device, clock),
        "pythae": lambda: bench_pythae(settings, x, device, clock),
        "seed_batching": lambda: bench_seed_batching(settings, x, device, clock),
        "compile": lambda: bench_compile(settings, x, device, clock),
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
    result["load_avg_after"] = _load()
    result["elapsed_s"] = time.perf_counter() - started
    return _finite(result)


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
                        help=f"subset of {','.join(ALL_SECTIONS)} (default: all but compile, which --compile adds)")
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
    parser.add_argument("--method-steps", type=int, default=None, metavar="K",
                        help="optimiser steps per method and repetition (default 20)")
    parser.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODES",
                        help="also time torch.compile on the minimal loop, in these comma-separated modes "
                             "(default mode: default; e.g. default,reduce-overhead on cuda)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="torch.set_num_threads(N)")
    parser.add_argument("--eval-set", default=None, metavar="K=V,...",
                        help="measure evaluation with these EvalConfig fields changed, e.g. "
                             "nll_samples=0,mi_curve_every=0 (what-if costs; the default is the defaults)")


def _eval_set(text: str) -> dict[str, Any]:
    """``nll_samples=0,mi_mixture=batch`` -> {"nll_samples": 0, "mi_mixture": "batch"}, checked
    against :class:`benchmark.config.EvalConfig`."""
    from ..config import EvalConfig

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
                "threads"):
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
    if args.eval_set:
        overrides["eval_overrides"] = _eval_set(args.eval_set)
    if args.compile:
        overrides["compile_modes"] = tuple(m.strip() for m in args.compile.split(",") if m.strip())
    if overrides.get("repeats", 1) < 1 or overrides.get("eval_repeats", 1) < 1:
        raise SystemExit("bench: --repeats and --eval-repeats must be at least 1")
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


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m benchmark.bench", description=__doc__.split("\n\n")[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
