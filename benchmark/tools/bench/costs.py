"""Cost sections: each end-of-run metric and each method relative to a training epoch, and the
resulting evaluation share of the ``quick`` grid's training time."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

import torch
from torch import Tensor

from ...discovery import METHODS
from ...evaluation import metrics
from ...ml.method import model_problem
from ...evaluation.evaluate import Evaluation, encode_all, evaluate, iw_log_px, latent_summary, reconstruction_metrics
from .common import EVAL_SHARE_TARGET, Clock, Settings, cost, median, quick_grid_runs, rotate, timed
from .loops import harness_epochs, harness_method, interleaved_with_harness


def metric_arms(method, split, config, device: torch.device, grid_config=None) -> dict[str, Callable[[], Any]]:
    """One callable per default end-of-run metric (those the current :class:`EvalConfig` switches
    on), computed the way the runner computes it, plus the runner's curve points and its whole
    ``evaluate()``. ``encode_test_split`` must run first: the posterior metrics use its output."""
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
    method = harness_method(preset, tuple(x.shape[1:]), device)
    config = settings.eval_config()
    grid_config = settings.grid_eval_config()
    arms = metric_arms(method, split, config, device, grid_config)
    round_times: dict[str, list[float]] = {name: [] for name in arms}
    rest = [name for name in arms if name != "encode_test_split"]

    def one_round(r: int) -> None:
        with torch.no_grad():  # as in evaluate(); decoder_geometry switches gradients on itself
            for name in ["encode_test_split", *rotate(rest, r)]:
                t0 = clock()
                arms[name]()
                round_times[name].append(clock() - t0)

    times = interleaved_with_harness(method, x, settings.batch_size, settings.eval_repeats, clock,
                                      {"metrics": one_round})
    epoch = times["harness"]
    per_metric = {name: {"seconds": median(timed(t)), "per_epoch": cost(t, epoch)} for name, t in round_times.items()}
    out: dict[str, Any] = {
        "model": preset.name, "test_examples": len(split), "train_examples": x.shape[0],
        "settings": asdict(config), "quick_grid_settings": asdict(grid_config),
        "eval_overrides": dict(settings.eval_overrides),
        "epoch_s": median(timed(epoch)), "metrics": per_metric,
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
    runs = quick_grid_runs()
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
        "note": "training excludes the curve points (the runner times the trainer's epochs only)",
    }


def bench_methods(settings: Settings, x: Tensor, split, device: torch.device, clock: Clock) -> dict[str, Any]:
    """Every registered method: the harness's trainer over ``method_steps`` steps (every round, the first
    a warm-up) and ``evaluate()`` with the quick grid's evaluation settings (the first
    ``eval_repeats`` rounds, all kept: it takes seconds), interleaved round-robin; costs relative
    to ``vae``, default hyperparameters, the first preset's model. A method that does not apply
    to that model (its ``check_model`` refuses it: a text-only method) is listed under
    ``not_applicable`` with its reason, not as a failure."""
    preset = settings.presets[0]
    shape, bs = tuple(x.shape[1:]), settings.batch_size
    steps = settings.method_steps
    subset = x[: steps * bs]
    built, failed, not_applicable = {}, {}, {}
    for name in METHODS.names():
        try:
            why = model_problem(name, settings.hyperparameters(name), preset.model_config())
        except Exception:  # building it reports what is wrong
            why = None
        if why is not None:
            not_applicable[name] = why
            continue
        try:
            built[name] = harness_method(preset, shape, device, name, hyperparameters=settings.hyperparameters(name))
        except Exception as exc:  # a method that cannot build this model is reported, not fatal
            failed[name] = f"{type(exc).__name__}: {exc}"
    config = settings.grid_eval_config()  # what the quick-grid estimate needs
    train_t: dict[str, list[float]] = {k: [] for k in built}
    eval_t: dict[str, list[float]] = {k: [] for k in built}
    epochs = {k: harness_epochs(m, subset, bs, torch.Generator().manual_seed(4)) for k, m in built.items()}
    gen = torch.Generator(device).manual_seed(5)
    eval_rounds = settings.eval_repeats
    for r in range(settings.repeats + 1):
        for name in rotate(list(built), r):
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
                           "not_applicable": not_applicable,
                           "times_s": {"train": train_t, "evaluate": eval_t}}
    for name in built:
        out["methods"][name] = {
            "step_ms": 1000 * median(timed(train_t[name])) / subset.shape[0] * bs,
            "evaluate_s": median(eval_t[name]),
            "step_cost_vs_vae": cost(train_t[name], train_t[base]),
            "evaluate_cost_vs_vae": cost(eval_t[name], eval_t[base], warmup=False),
            "parameters": sum(p.numel() for p in built[name].parameters()),
        }
    return out
