"""One run: load data, build the method, train, evaluate; returns a self-describing record.

Knows nothing about grids or files: the executor decides what to run and the store writes.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

from ..config import STREAMS, EvalConfig, RunConfig
from ..data.catalog import load_dataset
from ..data.splits import DataSplit, to_unit
from ..device import describe_device, resolve_device
from ..errors import DivergedError
from ..ml import images, metrics
from ..ml.method import Method, build_method
from ..ml.models import VAE
from ..ml.train import Trainer
from .provenance import environment, method_code
from .store import RECORD_VERSION, atomic_torch_save

EVAL_BATCH = 1000
Log = Callable[[str], None]


@torch.no_grad()
def encode_all(method: Method, x: Tensor) -> tuple[Tensor, Tensor]:
    """Posterior parameters of every example: ``x`` [N, *shape] -> mu, logvar [N, d]."""
    parts = [method.model.encode(x[i:i + EVAL_BATCH]) for i in range(0, x.shape[0], EVAL_BATCH)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def latent_summary(mu: Tensor, logvar: Tensor, config: EvalConfig, mi_generator: torch.Generator | None = None
                   ) -> dict[str, float]:
    """AU fraction and count and mean KL of a set of posteriors, and MI when a generator is given
    (the points of the training curves)."""
    au = metrics.active_units(mu, config.au_threshold)
    summary = {"au": au["fraction"], "au_count": au["count"], "kl": float(metrics.kl_to_prior(mu, logvar).mean())}
    if mi_generator is not None:
        summary["mi"] = metrics.mutual_information(mu, logvar, mixture=config.mi_mixture,
                                                   batch_size=config.mi_batch_size, generator=mi_generator)["mi"]
    return summary


@dataclass
class Evaluation:
    """End-of-run results: record fields (JSON-ready) and image grids [N, C, H, W] to store."""

    fields: dict[str, Any] = field(default_factory=dict)
    images: dict[str, Tensor] = field(default_factory=dict)


@torch.no_grad()
def _mi_posteriors(method: Method, mu: Tensor, logvar: Tensor, mi_x: Tensor | None,
                   config: EvalConfig) -> tuple[Tensor, Tensor]:
    """Posteriors mu, logvar [M, d] the MI is estimated on: the first ``config.mi_examples`` (None:
    all) of the evaluation split's ``mu``, ``logvar`` [N, d] (``mi_split = "test"``) or of
    ``mi_x`` [N', *shape] (``"train"``: float32 or uint8 pixels, encoded per batch via ``to_unit``)."""
    if config.mi_split not in ("test", "train"):
        raise ValueError(f"eval.mi_split must be 'test' or 'train', got {config.mi_split!r}")
    if config.mi_examples is not None and config.mi_examples < 2:
        raise ValueError(f"eval.mi_examples must be >= 2 or None, got {config.mi_examples}")
    if config.mi_split == "test":
        return mu[:config.mi_examples], logvar[:config.mi_examples]
    if mi_x is None:
        raise ValueError('eval.mi_split = "train" needs the training split (evaluate(..., mi_x=...))')
    x = mi_x[:config.mi_examples]
    parts = [method.model.encode(to_unit(x[i:i + EVAL_BATCH])) for i in range(0, x.shape[0], EVAL_BATCH)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _posterior_metrics(mu: Tensor, logvar: Tensor, labels: Tensor, config: EvalConfig,
                       generator: torch.Generator, out: Evaluation,
                       mi_posteriors: tuple[Tensor, Tensor] | None = None) -> None:
    """AU, KL and their vectors on ``mu``, ``logvar`` [N, d]; MI (nats) on ``mi_posteriors``
    [M, d] each (default: the same), flagged ``mi_at_cap`` within ``config.mi_cap_margin`` of log M."""
    au = metrics.active_units(mu, config.au_threshold)
    kl = metrics.kl_to_prior(mu, logvar)
    mi_mu, mi_logvar = mi_posteriors if mi_posteriors is not None else (mu, logvar)
    mi = metrics.mutual_information(mi_mu, mi_logvar, mixture=config.mi_mixture,
                                    batch_size=config.mi_batch_size, generator=generator)
    out.fields["metrics"].update({"au": au["fraction"], "au_count": au["count"], "kl": float(kl.mean()),
                                  "mi": mi["mi"], "mi_at_cap": mi["mi"] >= mi["cap"] - config.mi_cap_margin,
                                  **{f"kl_{k}": v for k, v in metrics.kl_quantiles(kl).items()}})
    out.fields["vectors"] = {"au_variances": au["variances"].tolist(),
                             "kl_per_dim": metrics.kl_per_dimension(mu, logvar).tolist()}
    out.fields["per_class"] = {
        "au": {str(c): v["fraction"] for c, v in metrics.active_units_per_class(mu, labels, config.au_threshold).items()},
        "kl": {str(c): v for c, v in metrics.kl_per_class(kl, labels).items()}}
    out.fields["estimators"].update({"au_threshold": config.au_threshold, "mi_estimator": mi["estimator"],
                                     "mi_split": config.mi_split, "mi_examples": mi_mu.shape[0],
                                     "mi_cap": mi["cap"], "mi_cap_margin": config.mi_cap_margin,
                                     "mi_mixture_size": mi["mixture_size"]})


def _reconstruction_metrics(model: VAE, x: Tensor, mu: Tensor, logvar: Tensor, generator: torch.Generator,
                            out: Evaluation) -> None:
    """rec (likelihood units), neg_elbo (beta = 1, full constants) and per-pixel mse, one posterior
    sample per example."""
    rec_sum = log_lik_sum = mse_sum = 0.0
    for i in range(0, x.shape[0], EVAL_BATCH):
        xb, mb, lb = x[i:i + EVAL_BATCH], mu[i:i + EVAL_BATCH], logvar[i:i + EVAL_BATCH]
        eps = torch.randn(mb.shape, generator=generator, device=mb.device, dtype=mb.dtype)
        params = model.decode(mb + torch.exp(0.5 * lb) * eps)
        rec_sum += float(model.likelihood.rec(params, xb).sum())
        log_lik_sum += float(model.likelihood.log_prob(params, xb).sum())
        mse_sum += float(((model.likelihood.mean(params) - xb) ** 2).flatten(1).mean(1).sum())
    n = x.shape[0]
    kl = out.fields["metrics"]["kl"]
    out.fields["metrics"].update({"rec": rec_sum / n, "neg_elbo": kl - log_lik_sum / n, "mse": mse_sum / n})
    out.fields["estimators"].update({"rec_samples": 1, "likelihood": model.likelihood.name,
                                     "neg_elbo": "beta = 1, one posterior sample, full likelihood constants"})


def iw_log_px(model: VAE, x: Tensor, num_samples: int, generator: torch.Generator | None) -> Tensor:
    """Importance-weighted ``log p(x)`` [N] (nats, float64) of ``x`` [N, *shape] under ``model``."""
    shape = x.shape[1:]

    def log_likelihood(xb: Tensor, z: Tensor) -> Tensor:  # z [S, B, d] -> [S, B]
        return model.likelihood.log_prob(model.decode(z.flatten(0, 1)).unflatten(0, z.shape[:2]).reshape(*z.shape[:2], *shape), xb)

    return metrics.importance_weighted_log_likelihood(x, model.encode, log_likelihood, num_samples=num_samples,
                                                      generator=generator)


def _iw_nll(model: VAE, x: Tensor, config: EvalConfig, generator: torch.Generator, out: Evaluation) -> None:
    x = x[:config.nll_examples]
    log_px = iw_log_px(model, x, config.nll_samples, generator)
    out.fields["metrics"]["nll"] = -float(log_px.mean())
    out.fields["estimators"].update({"nll_samples": config.nll_samples, "nll_examples": x.shape[0]})


def _decoder_metrics(model: VAE, mu: Tensor, config: EvalConfig, generator: torch.Generator, out: Evaluation) -> None:
    if config.geometry_points:
        geo = metrics.decoder_geometry(model.decode_mean, mu[:config.geometry_points], generator=generator,
                                       pair_scale=config.pair_scale, batch_size=64)
        settings = {"pair_scale", "points", "pairs", "quantiles"}
        out.fields["metrics"].update({f"geo_{k}": v for k, v in geo.items() if k not in settings})
        out.fields["estimators"]["geometry"] = {k: geo[k] for k in settings}
    if config.noise_points:
        points = mu[:config.noise_points]
        out.fields["noise"] = metrics.noise_sensitivity(model.decode_mean, points, draws=config.noise_draws,
                                                        generator=generator)
        grid = images.noise_grid(model.decode_mean, points[:8], out.fields["noise"]["variances"], generator=generator)
        if grid is not None:
            out.images["noise"] = grid


def _image_samples(model: VAE, x: Tensor, mu: Tensor, generator: torch.Generator, out: Evaluation) -> None:
    """Reconstructions (first 8 test images over their decoded means) and 16 prior samples."""
    if not images.is_image_shape(x.shape[1:]):
        return
    out.images["reconstructions"] = torch.cat([x[:8], model.decode_mean(mu[:8])])
    z = torch.randn((16, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
    out.images["samples"] = model.decode_mean(z)


@torch.no_grad()
def evaluate(method: Method, split: DataSplit, config: EvalConfig, generator: torch.Generator,
             mi_x: Tensor | None = None) -> Evaluation:
    """End-of-run metrics on the evaluation split (see METRICS.md): ``metrics`` (scalars),
    ``vectors`` (per latent dimension), ``per_class``, ``noise``, ``estimators`` (every setting).
    MI uses ``config.mi_split``: with ``"train"``, ``mi_x`` [N', *shape] is the training split."""
    method.eval()
    model, x = method.model, split.x
    out = Evaluation({"metrics": {}, "estimators": {"split": "test", "examples": x.shape[0]}})
    mu, logvar = encode_all(method, x)
    _posterior_metrics(mu, logvar, split.y, config, generator, out,
                       _mi_posteriors(method, mu, logvar, mi_x, config))
    _reconstruction_metrics(model, x, mu, logvar, generator, out)
    if config.nll_samples:
        _iw_nll(model, x, config, generator, out)
    _decoder_metrics(model, mu, config, generator, out)
    _image_samples(model, x, mu, generator, out)
    return out


def _rng_states(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    states = {name: g.get_state() for name, g in generators.items()}
    states["torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def save_checkpoint(path: Path, run_id: str, trainer: Trainer, generators: dict[str, torch.Generator],
                    record: dict[str, Any], train_time: float) -> None:
    """Atomically save everything needed to resume the run after ``trainer.epoch`` epochs."""
    state = {"run_id": run_id, "code": record["code"]["key"], "trainer": trainer.state_dict(),
             "rng": _rng_states(generators), "curves": record["curves"], "train_time_s": train_time}
    atomic_torch_save(state, path)


def load_checkpoint(path: Path, run_id: str, trainer: Trainer, generators: dict[str, torch.Generator],
                    record: dict[str, Any]) -> float | None:
    """Restore a checkpoint of run ``run_id`` into ``trainer``, the generators and the record's
    curves; returns the training time spent before it, or None (nothing restored) when the
    checkpoint was made by other code (another ``record["code"]["key"]``)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("run_id") != run_id:
        raise RuntimeError(f"checkpoint {path} belongs to run {state.get('run_id')}, not {run_id}: delete it")
    if state.get("code") != record["code"]["key"]:
        return None
    trainer.load_state_dict(state["trainer"])
    rng = state["rng"]
    for name, generator in generators.items():
        generator.set_state(rng[name])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    record["curves"] = list(state["curves"])
    return float(state["train_time_s"])


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunResult(NamedTuple):
    """A run's JSON-ready ``record``, the image grids [N, C, H, W] in [0, 1] to store beside it
    and, when asked for, the trained model's state dict (on the CPU)."""

    record: dict[str, Any]
    images: dict[str, Tensor]
    model_state: dict[str, Any] | None = None


def new_record(config: RunConfig) -> dict[str, Any]:
    """The skeleton every record starts from (status ``running``)."""
    return {
        "record_version": RECORD_VERSION, "run_id": config.run_id, "label": config.label(),
        "config": config.to_dict(), "status": "running", "error": None, "diverged_epoch": None,
        "metrics": {}, "vectors": {}, "estimators": {}, "curves": [], "method_extras": {},
        "seeds": {s: config.stream_seed(s) for s in STREAMS}, "code": method_code(config.method),
        "started_at": _utc_now(),
    }


def _finish(record: dict[str, Any], started: float, device: str) -> dict[str, Any]:
    record["wall_time_s"] = time.perf_counter() - started
    record["finished_at"] = _utc_now()
    record.setdefault("device", device)
    record["environment"] = environment()
    return record


def failed_result(config: RunConfig, error_type: str, message: str, trace: str | None = None) -> RunResult:
    """The result of a run that died outside :func:`execute` (e.g. its worker process was killed)."""
    record = new_record(config)
    record.update(status="failed", error={"type": error_type, "message": message, "traceback": trace})
    return RunResult(_finish(record, time.perf_counter(), "unknown"), {})


def execute(config: RunConfig, *, device: str = "auto", data_root: str | None = None,
            download: bool = False, log: Log = print, checkpoint: Path | None = None,
            checkpoint_every: int = 0, keep_model: bool = False) -> RunResult:
    """Train and evaluate one run; never raises for a failing run (status ``failed`` or
    ``diverged`` in the record), except KeyboardInterrupt, which leaves no record.

    With ``checkpoint`` and ``checkpoint_every``, the training state is saved there every
    ``checkpoint_every`` epochs, and a run finding a checkpoint of its own resumes from it
    (same numbers as an uninterrupted run on CPU). Deleting the file is the caller's job.
    ``keep_model`` returns the trained state dict with the result.
    """
    t0 = time.perf_counter()
    record = new_record(config)
    evaluation, model_state = Evaluation(), None
    try:
        torch_device = resolve_device(device)
        record["device"] = describe_device(torch_device)
        data = load_dataset(config.dataset.name, data_root=data_root, seed=record["seeds"]["data"],
                            train_size=config.dataset.train_size, test_size=config.dataset.test_size,
                            device=torch_device, download=download, float_train=False)
        torch.manual_seed(record["seeds"]["init"])
        method = build_method(config.method, config.hyperparameters, config.model, data.shape).to(torch_device)
        order = torch.Generator().manual_seed(record["seeds"]["order"])
        curve_gen = torch.Generator(torch_device).manual_seed(record["seeds"]["curves"])
        eval_gen = torch.Generator(torch_device).manual_seed(record["seeds"]["eval"])
        every, mi_every, last = config.eval.curve_every, config.eval.mi_curve_every, config.train.epochs
        final_mi_is_curve_mi = config.eval.mi_split == "test" and config.eval.mi_examples is None

        def curve_point(epoch: int, parts: dict[str, float]) -> None:
            point: dict[str, Any] = {"epoch": epoch, **parts}
            # The last point's MI comes from the final evaluation when that uses the curves' estimator.
            with_mi = bool(mi_every) and epoch % mi_every == 0 and (epoch != last or not final_mi_is_curve_mi)
            if epoch % every == 0 or epoch == last or with_mi:
                method.eval()
                mu, logvar = encode_all(method, data.test.x)
                summary = latent_summary(mu, logvar, config.eval, curve_gen if with_mi else None)
                point.update({f"test_{k}": v for k, v in summary.items()})
            record["curves"].append(point)
            log(f"  {config.run_id} epoch {epoch}/{last} "
                + " ".join(f"{k}={v:.4g}" for k, v in point.items() if k != "epoch"))

        torch.manual_seed(record["seeds"]["train"])
        trainer = Trainer(method, data.train.x, config.train, order)
        generators = {"curves": curve_gen}
        train_time = 0.0
        if checkpoint is not None and checkpoint.exists():
            restored = load_checkpoint(checkpoint, config.run_id, trainer, generators, record)
            if restored is None:
                log(f"  {config.run_id}: checkpoint {checkpoint} was made by other code: starting afresh")
            else:
                train_time = restored
                log(f"  {config.run_id} resumed from {checkpoint} after epoch {trainer.epoch}")
        while not trainer.done:
            t_epoch = time.perf_counter()
            parts = trainer.run_epoch()
            train_time += time.perf_counter() - t_epoch
            curve_point(trainer.epoch, parts)
            if checkpoint is not None and checkpoint_every and trainer.epoch % checkpoint_every == 0 and not trainer.done:
                save_checkpoint(checkpoint, config.run_id, trainer, generators, record, train_time)
        record["train_time_s"] = train_time
        t_eval = time.perf_counter()
        evaluation = evaluate(method, data.test, config.eval, eval_gen,
                              mi_x=data.train.x if config.eval.mi_split == "train" else None)
        record.update(evaluation.fields)
        if mi_every and last % mi_every == 0 and final_mi_is_curve_mi:
            record["curves"][-1]["test_mi"] = record["metrics"]["mi"]
        record["eval_time_s"] = time.perf_counter() - t_eval
        record["method_extras"] = method.record_extras()
        record["status"] = "ok"
        if keep_model:
            model_state = {k: v.detach().cpu() for k, v in method.state_dict().items()}
    except DivergedError as exc:
        record.update(status="diverged", diverged_epoch=exc.epoch + 1,
                      error={"type": "DivergedError", "message": str(exc), "traceback": None})
    except Exception as exc:  # a failing run is recorded; the grid goes on
        record.update(status="failed", error={"type": type(exc).__name__, "message": str(exc),
                                              "traceback": traceback.format_exc()})
    ok = record["status"] == "ok"
    return RunResult(_finish(record, t0, device), evaluation.images if ok else {}, model_state)
