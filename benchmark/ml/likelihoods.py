"""Observation models p(x|z): what the decoder's output means and how reconstruction is scored.

The decoder outputs natural parameters ``params`` with the data's shape. All functions
broadcast over leading sample dimensions: ``params`` [..., B, *shape], ``x`` [B, *shape];
results are summed over the data dimensions, in nats. ``categorical`` scores sentences: x is
token ids [B, T] and params the logits [..., B, T - 1, V] of its predicted tokens x[:, 1:].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.vocabulary import PAD_ID
from ..registry import Registry


def _sum_data_dims(values: Tensor, x: Tensor) -> Tensor:
    """Sum the trailing ``x.dim() - 1`` (data) dimensions of ``values``."""
    data_dims = x.dim() - 1
    return values.sum(dim=tuple(range(-data_dims, 0))) if data_dims else values


@dataclass(frozen=True)
class Likelihood:
    """A decoder likelihood.

    ``rec(params, x)`` is the training reconstruction term (its own units; may drop constants),
    ``log_prob(params, x)`` the log-density with every constant (for IW-NLL), and
    ``mean(params)`` the decoder mean in data space. Both scores have shape [..., B].
    """

    name: str
    description: str
    rec: Callable[[Tensor, Tensor], Tensor]
    log_prob: Callable[[Tensor, Tensor], Tensor]
    mean: Callable[[Tensor], Tensor]


LIKELIHOODS: Registry[Likelihood] = Registry("likelihood")


def _bernoulli_rec(logits: Tensor, x: Tensor) -> Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    return _sum_data_dims(bce, x)


def _gaussian_rec(mean: Tensor, x: Tensor) -> Tensor:
    return _sum_data_dims((x - mean) ** 2, x)


def _gaussian_log_prob(mean: Tensor, x: Tensor) -> Tensor:
    # log N(x; mean, 1/2 I) = -(x - mean)^2 - (D/2) log(pi)
    size = x[0].numel()
    return -_gaussian_rec(mean, x) - 0.5 * size * math.log(math.pi)


def _sigma_rec(mean: Tensor, x: Tensor) -> Tensor:
    # Gaussian with the per-example optimal shared variance sigma^2 = mse (Rybkin et al. 2021).
    size = x[0].numel()
    mse = _sum_data_dims((x - mean) ** 2, x) / size
    return 0.5 * size * (torch.log(2 * math.pi * mse.clamp_min(1e-12)) + 1)


LIKELIHOODS.add("bernoulli", Likelihood(
    "bernoulli", "logits; rec = binary cross-entropy summed over pixels",
    rec=_bernoulli_rec, log_prob=lambda p, x: -_bernoulli_rec(p, x), mean=torch.sigmoid))
LIKELIHOODS.add("gaussian", Likelihood(
    "gaussian", "means, fixed variance 1/2; rec = sum of squared errors (constant dropped)",
    rec=_gaussian_rec, log_prob=_gaussian_log_prob, mean=lambda p: p))
LIKELIHOODS.add("sigma", Likelihood(
    "sigma", "sigma-VAE: variance set to its per-example optimum; rec = D/2 (log(2 pi mse) + 1)",
    rec=_sigma_rec, log_prob=lambda p, x: -_sigma_rec(p, x), mean=lambda p: p))


def _token_nll(logits: Tensor, x: Tensor) -> Tensor:
    """-log p of a sentence's predicted tokens, summed over the sentence: logits [..., B, T' - 1, V]
    and ids x [B, T] -> [..., B] (x[:, 1:T'] predicted, ``</s>`` included, padding masked; x's
    tokens after T' must be padding: the logits of a batch trimmed to its longest sentence)."""
    target = x[:, 1:logits.shape[-2] + 1]
    lead = logits.shape[:-3]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                          target.expand(*lead, *target.shape).reshape(-1), reduction="none")
    return (nll.reshape(*lead, *target.shape) * (target != PAD_ID)).sum(-1)


LIKELIHOODS.add("categorical", Likelihood(
    "categorical", "logits over the vocabulary at each token; rec = -log p of the sentence's tokens (</s> included, "
    "<s> not predicted, padding masked), summed over the sentence",
    rec=_token_nll, log_prob=lambda p, x: -_token_nll(p, x), mean=lambda p: p.softmax(-1)))
