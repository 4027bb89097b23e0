"""The bench's settings, timing helpers, the machine it runs on and the data it measures with."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ...config import EvalConfig, ModelConfig
from ...data.catalog import load_dataset
from ...data.splits import DataSplit
from ...discovery import METHODS
from ...errors import BenchmarkError
from ...planning.grid import load_grid
from ...results.provenance import cpu, git_commit

BENCH_VERSION = 1
DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, before --threads
THROUGHPUT_TARGET = 0.95  # harness / minimal examples per second, MLP presets (issue: fast enough)
EVAL_SHARE_TARGET = 0.20  # default metrics' evaluation time / the quick grid's training time
TEXT_STEP_BOUND = 1.2  # harness / minimal time of a training step of the PTB LSTM VAE (issue: at most 1.2x)


@dataclass(frozen=True)
class Preset:
    """A model preset (gaussian likelihood, ReLU, like the grids): an MLP of ``hidden`` widths,
    or (``arch`` = "conv64", for the packing section) the grids' 64x64 convolutional networks,
    which take 3 x 64 x 64 images (``shape``)."""
    name: str
    hidden: tuple[int, ...]
    latent_dim: int
    arch: str = "mlp"
    shape: tuple[int, ...] | None = None  # the examples' shape this preset needs (None: the bench's data)

    def model_config(self):
        if self.arch != "mlp":
            return ModelConfig(arch=self.arch, latent_dim=self.latent_dim, likelihood="gaussian",
                               posterior_variance="logvar")
        return ModelConfig(arch="mlp", latent_dim=self.latent_dim, likelihood="gaussian",
                           posterior_variance="logvar",
                           options={"hidden": list(self.hidden), "activation": "relu"})


FULL_PRESETS = (Preset("mlp-2x512", (512, 512), 32), Preset("mlp-1x512", (512,), 32))
QUICK_PRESETS = (Preset("mlp-2x64", (64, 64), 8), Preset("mlp-1x64", (64,), 8))
# The paper's capacities (the grids' mlp-shallow and mlp-deep), for the packing section.
PACK_PRESETS = (Preset("mlp-1x512", (512,), 32), Preset("mlp-4x512", (512, 512, 512, 512), 32),
                Preset("conv64", (), 64, arch="conv64", shape=(3, 64, 64)))


@dataclass
class Settings:
    """What the bench measures, on what, and how often (``--quick``: :meth:`quick_mode`)."""

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
    pack_sizes: tuple[int, ...] = (1, 8, 32, 128)  # packing section: runs per pack
    pack_methods: tuple[str, ...] = ("vae", "beta-vae", "lr-vae", "lid-vae", "il-lid-vae")
    pack_presets: tuple[Preset, ...] = PACK_PRESETS
    text_sentences: int = 256  # text section: PTB training sentences per timed epoch
    text_epochs: int = 6  # text section: timed epochs per arm, after one warm-up
    text_batch_size: int = 32  # text section: sentences per batch (the text-VAE literature's)
    text_presets: tuple[str, ...] = ("lstm-ptb", "lstm-small")  # text section: LSTM architectures
    text_latent_dim: int = 32
    table_records: int = 2000  # tables section: records the results folder grows to
    table_points: tuple[int, ...] = (100, 1000, 2000)  # tables section: where the rebuild is timed against the update
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
                      method_steps=2, seed_batch=2, presets=QUICK_PRESETS, threads=1, pack_sizes=(1, 4),
                      pack_presets=QUICK_PRESETS[1:], text_sentences=128, text_epochs=4,
                      table_records=60, table_points=(20, 60),
                      eval_overrides={"nll_samples": 4, "nll_examples": 16, "geometry_points": 4,
                                      "noise_points": 4, "noise_draws": 2},
                      method_overrides={"hidden_latent": 16, "hidden_data": 16})
        values.update(overrides)
        return cls(**values)

    def eval_config(self):
        """The default :class:`benchmark.config.EvalConfig` (with ``eval_overrides`` it has)."""
        names = {f.name for f in dataclasses.fields(EvalConfig)}
        return EvalConfig(**{k: v for k, v in self.eval_overrides.items() if k in names})

    def grid_eval_config(self):
        """The ``quick`` grid's evaluation settings (its ``[eval]`` table over the defaults), with
        ``eval_overrides`` applied; the defaults when the grid cannot be read."""
        runs = quick_grid_runs()
        if not runs:
            return self.eval_config()
        names = {f.name for f in dataclasses.fields(type(runs[0].eval))}
        return dataclasses.replace(runs[0].eval, **{k: v for k, v in self.eval_overrides.items() if k in names})

    def hyperparameters(self, method: str) -> dict[str, Any]:
        """The ``method_overrides`` that ``method``'s Config has."""
        names = {f.name for f in dataclasses.fields(METHODS[method].Config)}
        return {k: v for k, v in self.method_overrides.items() if k in names}


ALL_SECTIONS = ("threads", "throughput", "metrics", "methods", "pythae", "seed_batching", "compile", "packing",
                "pack_host", "pack_eval", "text", "tables")


class Clock:
    """``perf_counter`` that waits for queued GPU work first, so intervals are honest on CUDA."""
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def timed(samples: list[float]) -> list[float]:
    """Drop the warm-up repetition."""
    return samples[1:] if len(samples) > 1 else samples


def compare(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """Speed of arm A relative to arm B from paired times: ``t_B / t_A`` per repetition.

    ``numerator`` / ``denominator`` are the times of A and B, repetition by repetition (the
    first is a warm-up and dropped). A ratio above 1 means A is faster.
    """
    a, b = timed(numerator), timed(denominator)
    pairs = [tb / ta for ta, tb in zip(a, b) if ta > 0]
    return {"ratio": median(pairs), "ratio_of_medians": median(b) / median(a) if a and b else math.nan,
            "ratio_min": min(pairs) if pairs else math.nan, "ratio_max": max(pairs) if pairs else math.nan}


def cost(numerator: list[float], denominator: list[float], warmup: bool = True) -> float:
    """Median over repetitions of ``t_A / t_B`` (a relative cost: above 1 means A is slower);
    ``warmup``: the first repetition is a warm-up and is dropped."""
    a, b = (timed(numerator), timed(denominator)) if warmup else (numerator, denominator)
    return median([ta / tb for ta, tb in zip(a, b) if tb > 0])


def rotate(items: list, k: int) -> list:
    k %= max(len(items), 1)
    return items[k:] + items[:k]


def finite(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def load_avg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU model, cores, torch threads and version, GPU, load, date (and `date`'s own text)."""
    try:
        date_text = subprocess.run(["date"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        date_text = None
    info: dict[str, Any] = {
        "cpu": cpu()["model"], "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "device": str(device), "gpu": None, "load_avg": load_avg(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "date_text": date_text,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    try:
        info["git"] = git_commit()
    except Exception:  # provenance is informative only
        info["git"] = None
    return info


def load_data(settings: Settings, device: torch.device):
    """Train subset x [N, *shape] and the test split (a :class:`benchmark.data.splits.DataSplit`, labels
    included) on ``device``; synthetic tensors of the same shape when the data set is missing or
    ``settings.data == "synthetic"``. Returns (train x, test split, description)."""
    test_size = settings.test_size
    if settings.data != "synthetic":
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


def quick_grid_runs():
    """The runs of the ``quick`` grid (none when it cannot be read: the estimate is optional)."""
    try:
        return load_grid("quick").expand()
    except Exception:  # the estimate is optional
        return []
