"""The end-of-run evaluation and the per-epoch curve points, on the evaluation (test) split.

Every metric comes from :mod:`benchmark.evaluation.metrics` (definitions, units and estimator settings:
docs/metrics.md); this module runs them at the runner's batch sizes, in a fixed order on one
generator, and collects the record sections they fill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..config import EvalConfig
from ..data.splits import DataSplit, to_unit
from ..data.vocabulary import PAD_ID, Vocabulary
from . import metrics
from ..ml import images
from ..ml.method import Method
from ..ml.models import VAEModel

EVAL_BATCH = 1000  # examples encoded / decoded at a time


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
    """End-of-run results on the evaluation split: the record sections they fill (JSON-ready)
    and image grids [N, C, H, W] in [0, 1] to store beside the record."""

    metrics: dict[str, Any] = field(default_factory=dict)  # scalars (docs/metrics.md)
    estimators: dict[str, Any] = field(default_factory=dict)  # every setting behind them
    vectors: dict[str, list[float]] = field(default_factory=dict)  # per latent dimension
    per_class: dict[str, dict[str, float]] | None = None  # per label: AU fraction, mean KL (nats)
    noise: dict[str, Any] | None = None  # noise sensitivity (when eval.noise_points > 0)
    images: dict[str, Tensor] = field(default_factory=dict)
    texts: dict[str, list[str]] | None = None  # text runs: greedy decodings (reconstructions, samples)
    invalid: dict[str, str] = field(default_factory=dict)  # metric -> why its estimator's own check rejects it
    neg_elbo_terms: Tensor | None = None  # per-example -ELBO [N] (nats, float64): the IW-NLL's check


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
    out.metrics.update({"au": au["fraction"], "au_count": au["count"], "kl": float(kl.mean()),
                        "mi": mi["mi"], "mi_at_cap": mi["mi"] >= mi["cap"] - config.mi_cap_margin,
                                  **{f"kl_{k}": v for k, v in metrics.kl_quantiles(kl).items()}})
    out.vectors = {"au_variances": au["variances"].tolist(),
                             "kl_per_dim": metrics.kl_per_dimension(mu, logvar).tolist()}
    if labels.unique().numel() > 1:  # a data set without labels (all 0) has no classes to compare
        out.per_class = {
            "au": {str(c): v["fraction"] for c, v in metrics.active_units_per_class(mu, labels, config.au_threshold).items()},
            "kl": {str(c): v for c, v in metrics.kl_per_class(kl, labels).items()}}
    out.estimators.update({"au_threshold": config.au_threshold, "mi_estimator": mi["estimator"],
                           "mi_split": config.mi_split, "mi_examples": mi_mu.shape[0], "mi_se": mi["se"],
                           "mi_cap": mi["cap"], "mi_cap_margin": config.mi_cap_margin,
                           "mi_mixture_size": mi["mixture_size"]})


def reconstruction_metrics(model: VAEModel, x: Tensor, mu: Tensor, logvar: Tensor, generator: torch.Generator,
                           out: Evaluation, kind: str = "vector") -> None:
    """rec (likelihood units), neg_elbo (beta = 1, full constants) of ``x`` [N, *shape] with
    posteriors ``mu``, ``logvar`` [N, d], one posterior sample per example, and the per-pixel mse
    of the decoder mean (fixed-size data) or the perplexity bound exp(-ELBO / tokens) (sentences,
    :data:`SEQUENCE`); added to ``out``."""
    rec_sum = mse_sum = 0.0
    log_lik = []
    for i in range(0, x.shape[0], EVAL_BATCH):
        xb, mb, lb = x[i:i + EVAL_BATCH], mu[i:i + EVAL_BATCH], logvar[i:i + EVAL_BATCH]
        eps = torch.randn(mb.shape, generator=generator, device=mb.device, dtype=mb.dtype)
        z = mb + torch.exp(0.5 * lb) * eps
        if kind == SEQUENCE:  # scored in order of length (rec is -log p: the likelihood has no dropped constant)
            log_lik.append(model.log_likelihood(xb, z[None])[0].double())
            rec_sum -= float(log_lik[-1].sum())
            continue
        params = model.decode_given(z, xb)
        rec_sum += float(model.likelihood.rec(params, xb).sum())
        log_lik.append(model.likelihood.log_prob(params, xb).double())
        mse_sum += float(((model.likelihood.mean(params) - xb) ** 2).flatten(1).mean(1).sum())
    n = x.shape[0]
    out.neg_elbo_terms = metrics.kl_to_prior(mu.double(), logvar.double()) - torch.cat(log_lik)
    out.metrics.update({"rec": rec_sum / n, "neg_elbo": float(out.neg_elbo_terms.mean())})
    out.estimators.update({"rec_samples": 1, "likelihood": model.likelihood.name,
                           "neg_elbo": "beta = 1, one posterior sample, full likelihood constants"})
    if kind == SEQUENCE:
        tokens = predicted_tokens(x)
        out.metrics["ppl_elbo"] = math.exp(float(out.neg_elbo_terms.sum()) / int(tokens.sum()))
        out.estimators.update({"tokens": int(tokens.sum()), "tokens_counted": TOKENS_COUNTED})
    else:
        out.metrics["mse"] = mse_sum / n


SEQUENCE = "sequence"
TOKENS_COUNTED = "every predicted token: the words and </s> (not <s>, not padding)"


def predicted_tokens(x: Tensor) -> Tensor:
    """Predicted tokens per sentence [N] of token ids ``x`` [N, T]: ``</s>`` included, ``<s>`` not."""
    return (x[:, 1:] != PAD_ID).sum(1)


def iw_log_px(model: VAEModel, x: Tensor, num_samples: int, generator: torch.Generator | None,
              batch_size: int = metrics.IW_BATCH) -> Tensor:
    """Importance-weighted ``log p(x)`` [N] (nats, float64) of ``x`` [N, *shape] under ``model``."""
    return metrics.importance_weighted_log_likelihood(x, model.encode, model.log_likelihood, num_samples=num_samples,
                                                      generator=generator, batch_size=batch_size)


def _iw_nll(model: VAEModel, x: Tensor, config: EvalConfig, generator: torch.Generator, out: Evaluation,
            kind: str = "vector") -> None:
    x = x[:config.nll_examples]
    log_px = iw_log_px(model, x, config.nll_samples, generator)
    out.metrics["nll"] = -float(log_px.mean())
    out.estimators.update({"nll_samples": config.nll_samples, "nll_examples": x.shape[0]})
    if kind == SEQUENCE:
        tokens = int(predicted_tokens(x).sum())
        out.metrics["ppl"] = math.exp(-float(log_px.sum()) / tokens)
        out.estimators["nll_tokens"] = tokens
    if out.neg_elbo_terms is not None:  # the -ELBO on the same examples, with its standard error
        same = out.neg_elbo_terms[:x.shape[0]]
        se = float(same.std() / same.numel() ** 0.5) if same.numel() > 1 else 0.0
        out.estimators["nll_check"] = {"neg_elbo": float(same.mean()), "neg_elbo_se": se}


CHECK_SE = 3.0  # an estimate this many of its own standard errors past a bound it cannot cross is invalid


def invalid_metrics(metrics: dict[str, Any], estimators: dict[str, Any]) -> dict[str, str]:
    """Metric -> why its estimator's own checks reject the value (docs/metrics.md, "Invalid values"):
    not finite; MI whose Monte Carlo standard error exceeds its cap log M (noise wider than the
    whole range [0, log M] MI can take: the estimate says nothing), below 0 by more than
    :data:`CHECK_SE` standard errors, or above its cap (which no per-example term can exceed)
    beyond rounding; IW-NLL above the
    single-sample -ELBO of the same examples by more than :data:`CHECK_SE` standard errors (the IW
    bound is never looser than the ELBO). Such values are kept in the record, flagged, and left out
    of means, tests and rankings by the report."""
    invalid = {key: "not finite" for key, value in metrics.items()
               if isinstance(value, float) and not math.isfinite(value)}
    mi, se, cap = metrics.get("mi"), estimators.get("mi_se"), estimators.get("mi_cap")
    if "mi" not in invalid and mi is not None and se is not None:
        if cap is not None and se > cap:
            invalid["mi"] = (f"{mi:.4g} nats with a standard error of {se:.3g}: noisier than the whole range MI "
                             f"can take, [0, log M = {cap:.4g}]")
        elif mi < -CHECK_SE * se - 1e-9:
            invalid["mi"] = f"{mi:.4g} nats: below 0 by more than {CHECK_SE:g} standard errors ({se:.3g})"
        elif cap is not None and mi > cap + 1e-9 * max(1.0, cap):
            invalid["mi"] = f"{mi:.6g} nats: above its cap log M = {cap:.6g}"
    nll, check = metrics.get("nll"), estimators.get("nll_check")
    if "nll" not in invalid and nll is not None and check is not None:
        bound = check["neg_elbo"] + CHECK_SE * check["neg_elbo_se"]
        if nll > bound:
            invalid["nll"] = (f"{nll:.6g} nats: above the -ELBO of the same examples ({check['neg_elbo']:.6g}) by more "
                              f"than {CHECK_SE:g} standard errors ({check['neg_elbo_se']:.3g})")
    return invalid


def _decoder_metrics(model: VAEModel, mu: Tensor, config: EvalConfig, generator: torch.Generator, out: Evaluation) -> None:
    if config.geometry_points:
        geo = metrics.decoder_geometry(model.decode_mean, mu[:config.geometry_points], generator=generator,
                                       pair_scale=config.pair_scale, batch_size=64)
        settings = {"pair_scale", "points", "pairs", "quantiles"}
        out.metrics.update({f"geo_{k}": v for k, v in geo.items() if k not in settings})
        out.estimators["geometry"] = {k: geo[k] for k in settings}
    if config.noise_points:
        points = mu[:config.noise_points]
        out.noise = metrics.noise_sensitivity(model.decode_mean, points, draws=config.noise_draws,
                                                        generator=generator)
        grid = images.noise_grid(model.decode_mean, points[:8], out.noise["variances"], generator=generator)
        if grid is not None:
            out.images["noise"] = grid


def _image_samples(model: VAEModel, x: Tensor, mu: Tensor, generator: torch.Generator, out: Evaluation) -> None:
    """Reconstructions (first 8 test images over their decoded means) and 16 prior samples."""
    if not images.is_image_shape(x.shape[1:]):
        return
    out.images["reconstructions"] = torch.cat([x[:8], model.decode_mean(mu[:8])])
    z = torch.randn((16, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
    out.images["samples"] = model.decode_mean(z)


TRAVERSAL_DIMS = 8  # rows of the traversal grid: the most active latent dims
TRAVERSAL_VALUES = (-3.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0)  # the traversed coordinate (prior units)
INTERPOLATION_PAIRS = 8
LATENT_IMAGES_STREAM = 0x1A7E  # mixed into the evaluation seed: the latent images' own random stream


def _latent_images(model: VAEModel, x: Tensor, mu: Tensor, generator: torch.Generator, out: Evaluation) -> None:
    """Latent traversals (the first test image's posterior mean with each of its
    :data:`TRAVERSAL_DIMS` most active dims set to :data:`TRAVERSAL_VALUES`) and interpolations
    (decoded means on the line between the posterior means of random test pairs, 8 steps), for
    image data. Runs after every metric on its own generator (seeded from ``generator``'s initial
    seed without drawing from it), so no other number changes; the layout goes to
    ``estimators["latent_images"]``."""
    if not images.is_image_shape(x.shape[1:]) or mu.shape[0] < 2:
        return
    variances = mu.var(dim=0, unbiased=True)
    dims = torch.argsort(variances, descending=True, stable=True)[:TRAVERSAL_DIMS].tolist()
    values = torch.tensor(TRAVERSAL_VALUES, dtype=mu.dtype, device=mu.device)
    z = mu[:1].repeat(len(dims) * len(values), 1)
    for row, dim in enumerate(dims):
        z[row * len(values):(row + 1) * len(values), dim] = values
    out.images["traversals"] = model.decode_mean(z)
    own = torch.Generator(mu.device).manual_seed((generator.initial_seed() ^ LATENT_IMAGES_STREAM) % 2 ** 63)
    pairs = torch.randint(0, mu.shape[0], (INTERPOLATION_PAIRS, 2), generator=own, device=mu.device)
    steps = torch.linspace(0, 1, len(TRAVERSAL_VALUES), dtype=mu.dtype, device=mu.device)[None, :, None]
    line = mu[pairs[:, :1]] * (1 - steps) + mu[pairs[:, 1:]] * steps  # [pairs, steps, d]
    out.images["interpolations"] = model.decode_mean(line.reshape(-1, mu.shape[1]))
    out.estimators["latent_images"] = {"traversal_dims": dims, "traversal_values": list(TRAVERSAL_VALUES),
                                       "traversal_image": 0, "interpolation_pairs": pairs.tolist(),
                                       "interpolation_steps": len(TRAVERSAL_VALUES)}


TEXT_SAMPLES = 8  # sentences of each kind in a text run's samples
SAMPLE_STREAM = 0x7E47  # mixed into the evaluation seed: the text samples' own random stream


def _text_samples(model: VAEModel, x: Tensor, mu: Tensor, generator: torch.Generator, out: Evaluation,
                  vocabulary: Vocabulary | None) -> None:
    """Greedy decodings, as text: the first test sentences from their posterior means
    (``reconstructions``: the sentence, then its decoding) and from prior draws (``samples``), on
    their own generator (no other number changes)."""
    if vocabulary is None:
        return
    own = torch.Generator(mu.device).manual_seed((generator.initial_seed() ^ SAMPLE_STREAM) % 2 ** 63)
    z = torch.randn((TEXT_SAMPLES, mu.shape[1]), generator=own, device=mu.device, dtype=mu.dtype)
    length = x.shape[1]

    def words(ids: Tensor) -> str:
        return " ".join(w for w in vocabulary.decode(ids) if w not in ("<s>", "</s>", "<pad>"))

    recon = model.generate(mu[:TEXT_SAMPLES], length)
    out.texts = {"reconstructions": [f"{words(a)} => {words(b)}" for a, b in zip(x[:TEXT_SAMPLES], recon)],
                 "samples": [words(ids) for ids in model.generate(z, length)]}


# What is measured beyond the posterior metrics, rec / -ELBO and the IW-NLL, per kind of data; the
# others are recorded as not applicable (estimators["not_applicable"]).
KIND_STEPS = {
    "vector": ("decoder_geometry", "noise_sensitivity", "images"),
    "image": ("decoder_geometry", "noise_sensitivity", "images"),
    SEQUENCE: ("text_samples",),
}
NOT_APPLICABLE = {  # step or metric -> why it has no value for a kind of data
    SEQUENCE: {"mse": "per-pixel error: a sentence has no pixels",
               "decoder_geometry": "decoder Jacobian in data space: tokens are discrete",
               "noise_sensitivity": "distances between decoded images: tokens are discrete",
               "images": "image grids: the data are sentences (see texts)"},
}


@torch.no_grad()
def evaluate(method: Method, split: DataSplit, config: EvalConfig, generator: torch.Generator,
             mi_x: Tensor | None = None, kind: str = "vector", vocabulary: Vocabulary | None = None) -> Evaluation:
    """End-of-run metrics on the evaluation split (docs/metrics.md): ``metrics`` (scalars),
    ``vectors`` (per latent dimension), ``per_class``, ``noise``, ``estimators`` (every setting),
    for data of ``kind`` (:data:`KIND_STEPS`; a text set also passes its ``vocabulary``). MI uses
    ``config.mi_split``: with ``"train"``, ``mi_x`` [N', *shape] is the training split."""
    method.eval()
    model, x = method.model, split.x
    out = Evaluation(estimators={"split": "test", "examples": x.shape[0]})
    mu, logvar = encode_all(method, x)
    _posterior_metrics(mu, logvar, split.y, config, generator, out,
                       _mi_posteriors(method, mu, logvar, mi_x, config))
    reconstruction_metrics(model, x, mu, logvar, generator, out, kind)
    if config.nll_samples:
        _iw_nll(model, x, config, generator, out, kind)
    steps = KIND_STEPS[kind]
    if "decoder_geometry" in steps:
        _decoder_metrics(model, mu, config, generator, out)
    if "images" in steps:
        _image_samples(model, x, mu, generator, out)
        _latent_images(model, x, mu, generator, out)
    if "text_samples" in steps:
        _text_samples(model, x, mu, generator, out, vocabulary)
    if kind in NOT_APPLICABLE:
        out.estimators["not_applicable"] = NOT_APPLICABLE[kind]
    out.invalid = invalid_metrics(out.metrics, out.estimators)
    return out


class CurvePoints:
    """The points of a run's training curves: per epoch the training means of the loss parts and,
    every ``curve_every`` epochs and at the last, the test-split AU / AU count / KL; MI every
    ``mi_curve_every`` epochs (from ``generator``)."""

    def __init__(self, config: EvalConfig, epochs: int, generator: torch.Generator):
        self.every, self.mi_every, self.last = config.curve_every, config.mi_curve_every, epochs
        self.generator = generator
        # The last point's MI comes from the final evaluation when that uses the curves' estimator.
        self.final_mi_is_curve_mi = config.mi_split == "test" and config.mi_examples is None
        self.config = config

    def point(self, method: Method, x: Tensor, epoch: int, parts: dict[str, float]) -> dict[str, Any]:
        """The point of ``epoch`` (1-based) with the training ``parts``; ``x`` [N, *shape]: the test split."""
        point: dict[str, Any] = {"epoch": epoch, **parts}
        with_mi = bool(self.mi_every) and epoch % self.mi_every == 0 and (
            epoch != self.last or not self.final_mi_is_curve_mi)
        if epoch % self.every == 0 or epoch == self.last or with_mi:
            method.eval()
            mu, logvar = encode_all(method, x)
            summary = latent_summary(mu, logvar, self.config, self.generator if with_mi else None)
            point.update({f"test_{k}": v for k, v in summary.items()})
        return point

    def final_mi(self, points: list[dict[str, Any]], evaluation: Evaluation) -> None:
        """Give the last point the final evaluation's MI when the curves' MI falls on the last epoch."""
        if self.mi_every and self.last % self.mi_every == 0 and self.final_mi_is_curve_mi:
            points[-1]["test_mi"] = evaluation.metrics["mi"]
