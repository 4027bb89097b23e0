"""One run: load data, build the method, train, evaluate; returns a self-describing record.

Knows nothing about grids or files: the executor decides what to run and the store writes.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from typing import Any, Callable

import torch
from torch import Tensor

from . import metrics
from .config import EvalConfig, RunConfig
from .data import load_dataset
from .errors import DivergedError
from .method import Method, build_method
from .provenance import environment
from .store import RECORD_VERSION
from .train import train

EVAL_BATCH = 1000
STREAMS = ("data", "init", "order", "train", "eval")
Log = Callable[[str], None]


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        from .errors import BenchmarkError
        raise BenchmarkError("--device cuda was asked for but torch sees no GPU; use --device cpu or auto")
    return resolved


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


@torch.no_grad()
def encode_all(method: Method, x: Tensor) -> tuple[Tensor, Tensor]:
    """Posterior parameters of every example: ``x`` [N, *shape] -> mu, logvar [N, d]."""
    parts = [method.model.encode(x[i:i + EVAL_BATCH]) for i in range(0, x.shape[0], EVAL_BATCH)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def latent_summary(mu: Tensor, logvar: Tensor, config: EvalConfig) -> dict[str, float]:
    """AU fraction and count, and mean KL, of a set of posteriors (used for curves)."""
    au = metrics.active_units(mu, config.au_threshold)
    return {"au": au["fraction"], "au_count": au["count"], "kl": float(metrics.kl_to_prior(mu, logvar).mean())}


@torch.no_grad()
def evaluate(method: Method, x: Tensor, config: EvalConfig, generator: torch.Generator) -> dict[str, Any]:
    """End-of-run metrics on the evaluation split ``x`` [N, *shape] (see METRICS.md).

    Returns ``{"metrics": scalars, "vectors": per-dimension arrays, "estimators": settings}``.
    """
    method.eval()
    model = method.model
    mu, logvar = encode_all(method, x)
    au = metrics.active_units(mu, config.au_threshold)
    kl = metrics.kl_to_prior(mu, logvar)
    mi = metrics.mutual_information(mu, logvar, mixture=config.mi_mixture,
                                    batch_size=config.mi_batch_size, generator=generator)
    rec_sum = log_lik_sum = mse_sum = 0.0
    for i in range(0, x.shape[0], EVAL_BATCH):
        xb, mb, lb = x[i:i + EVAL_BATCH], mu[i:i + EVAL_BATCH], logvar[i:i + EVAL_BATCH]
        eps = torch.randn(mb.shape, generator=generator, device="cpu").to(mb.device)
        params = model.decode(mb + torch.exp(0.5 * lb) * eps)
        rec_sum += float(model.likelihood.rec(params, xb).sum())
        log_lik_sum += float(model.likelihood.log_prob(params, xb).sum())
        mse_sum += float(((model.likelihood.mean(params) - xb) ** 2).flatten(1).mean(1).sum())
    n = x.shape[0]
    kl_mean = float(kl.mean())
    return {
        "metrics": {"au": au["fraction"], "au_count": au["count"], "kl": kl_mean, "mi": mi["mi"],
                    "rec": rec_sum / n, "neg_elbo": kl_mean - log_lik_sum / n, "mse": mse_sum / n},
        "vectors": {"au_variances": au["variances"].tolist(),
                    "kl_per_dim": metrics.kl_per_dimension(mu, logvar).tolist()},
        "estimators": {"split": "test", "examples": n, "au_threshold": config.au_threshold,
                       "mi_estimator": mi["estimator"], "mi_cap": mi["cap"], "mi_mixture_size": mi["mixture_size"],
                       "rec_samples": 1, "neg_elbo": "beta = 1, one posterior sample, full likelihood constants",
                       "likelihood": model.likelihood.name},
    }


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def execute(config: RunConfig, *, device: str = "auto", data_root: str | None = None,
            download: bool = False, log: Log = print) -> dict[str, Any]:
    """Train and evaluate one run; never raises for a failing run (status ``failed`` or
    ``diverged`` in the record), except KeyboardInterrupt, which leaves no record."""
    started, t0 = _utc_now(), time.perf_counter()
    record: dict[str, Any] = {
        "record_version": RECORD_VERSION, "run_id": config.run_id, "label": config.label(),
        "config": config.to_dict(), "status": "running", "error": None, "diverged_epoch": None,
        "metrics": {}, "vectors": {}, "estimators": {}, "curves": [], "method_extras": {},
        "seeds": {s: config.stream_seed(s) for s in STREAMS}, "started_at": started,
    }
    try:
        torch_device = resolve_device(device)
        record["device"] = describe_device(torch_device)
        data = load_dataset(config.dataset.name, data_root=data_root, seed=record["seeds"]["data"],
                            train_size=config.dataset.train_size, test_size=config.dataset.test_size,
                            device=torch_device, download=download)
        torch.manual_seed(record["seeds"]["init"])
        method = build_method(config.method, config.hyperparameters, config.model, data.shape).to(torch_device)
        order = torch.Generator().manual_seed(record["seeds"]["order"])
        eval_gen = torch.Generator().manual_seed(record["seeds"]["eval"])

        def on_epoch(epoch: int, parts: dict[str, float]) -> None:
            point: dict[str, Any] = {"epoch": epoch + 1, **parts}
            if (epoch + 1) % config.eval.curve_every == 0 or epoch + 1 == config.train.epochs:
                method.eval()
                point.update({f"test_{k}": v for k, v in latent_summary(*encode_all(method, data.test.x), config.eval).items()})
            record["curves"].append(point)
            log(f"  {config.run_id} epoch {epoch + 1}/{config.train.epochs} "
                + " ".join(f"{k}={v:.4g}" for k, v in point.items() if k != "epoch"))

        torch.manual_seed(record["seeds"]["train"])
        train(method, data.train.x, config.train, order, on_epoch)
        record["train_time_s"] = time.perf_counter() - t0
        t_eval = time.perf_counter()
        record.update(evaluate(method, data.test.x, config.eval, eval_gen))
        record["eval_time_s"] = time.perf_counter() - t_eval
        record["method_extras"] = method.record_extras()
        record["status"] = "ok"
    except DivergedError as exc:
        record.update(status="diverged", diverged_epoch=exc.epoch + 1,
                      error={"type": "DivergedError", "message": str(exc), "traceback": None})
    except Exception as exc:  # a failing run is recorded; the grid goes on
        record.update(status="failed", error={"type": type(exc).__name__, "message": str(exc),
                                              "traceback": traceback.format_exc()})
    record["wall_time_s"] = time.perf_counter() - t0
    record["finished_at"] = _utc_now()
    record.setdefault("device", device)
    record["environment"] = environment()
    return record
