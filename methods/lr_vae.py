"""LR-VAE (Song, Kim, Lee 2025): the encoder mean must invert the decoder on latent space.

On text (an LSTM arch; not in the paper, defined here and recorded): D(z) is a *soft sentence*,
rows of token distributions the encoder reads as expected embeddings. ``sequence_decoding``:
``teacher-forced`` (default) decodes the batch's own sentences from z (the decoder's softmax at
every position of the sentence, ``<s>`` one-hot first, padding after its end), so D depends on z
and on the sentence's prefixes; ``free-running`` rolls the decoder out from ``<s>`` for
``decode_length`` steps, each step's softmax fed back as the next input (no sentence involved).
Straight-through Gumbel-softmax tokens are not offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.func import functional_call

from benchmark.plugin import Method, ModelConfig, TrainingProgress, register_method
from benchmark.plugin import VAEModel, VAEOutput
from benchmark.plugin import make_schedule
from benchmark.plugin import SequenceVAEModel, setting, teacher_forced_soft_tokens

ZSource = Literal["prior", "posterior", "posterior-mean"]
SequenceDecoding = Literal["teacher-forced", "free-running"]
StopGradient = Literal["none", "z", "decoded"]
Reduction = Literal["mean", "sum"]


@dataclass
class LRVAEConfig:
    """LR-VAE's weights, its latent reconstruction loss and (on text) its soft sentences."""

    beta: float = setting(1.0, "[0, inf)", doc="weight of the KL term")
    alpha_T: float = setting(1.0, "[0, inf)", doc="final weight of the latent reconstruction loss L_LR (the schedule's "
                                                "target)")
    alpha_schedule: str = setting("linear", doc="how the weight reaches alpha_T: linear (from 0 over the run), constant, "
                                                "exponential, cyclical or kl-adaptive (benchmark.ml.schedules)")
    alpha_schedule_options: dict = setting(factory=dict, doc="that schedule's options, e.g. {duration = 0.5} (linear, "
                                                             "exponential), {cycles = 4, ratio = 0.5} (cyclical), "
                                                             "{center = 5.0} (kl-adaptive)")
    z_source: ZSource = setting("prior", doc="latents decoded for L_LR: prior (fresh z ~ N(0, I), target z), posterior "
                                             "(the batch's reparameterised samples, target z) or posterior-mean (decode "
                                             "a sample, target mu(x))")
    num_samples: int = setting(1, "[1, inf)", doc="latent samples per example in L_LR (L_LR averages over them)")
    stop_gradient: StopGradient = setting("none", doc="none, z (the latents and target are constants) or decoded (D(z) is "
                                                      "a constant: the decoder gets no L_LR gradient)")
    encoder_grad_scale: float = setting(1.0, "[0, inf)", doc="factor on the encoder's gradient from L_LR (the reference "
                                                           "code used 1e-4); the decoder keeps the full L_LR gradient")
    lr_reduction: Reduction = setting("mean", doc="mean over examples (default) or sum over the batch (a later "
                                                  "reference-code quirk: B times larger than the other terms)")
    sequence_decoding: SequenceDecoding = setting(
        "teacher-forced", added="LR-VAE on text",
        doc="text only: how D(z) becomes a soft sentence the encoder reads: teacher-forced (the batch's own sentences "
            "decoded from z) or free-running (decode_length steps from <s>, softmax fed back)")
    decode_length: int = setting(20, added="LR-VAE on text",
                                 doc="text only: tokens a free-running decoding produces after <s>")


class _ScaleGrad(torch.autograd.Function):
    """Identity whose backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


def _encoder_mean(model: VAEModel, x: Tensor, grad_scale: float) -> Tensor:
    """E_mu(x) [N, d]; the gradient reaching the encoder's parameters is scaled by ``grad_scale``
    (the gradient with respect to ``x`` is not)."""
    if grad_scale == 1.0:
        return model.encode(x)[0]
    params = {name: _ScaleGrad.apply(p, grad_scale) for name, p in model.encoder.named_parameters()}
    return functional_call(model.encoder, params, (x,))[0]


def decode_for_lr(model: VAEModel, z: Tensor, x: Tensor, config: LRVAEConfig) -> Tensor:
    """D(z) for latents z [N, d]: the decoder mean [N, *shape], or for a sentence model a soft
    sentence [N, T, V] (``sequence_decoding``; teacher forcing reads the sentences ``x`` [N, T])."""
    if not isinstance(model, SequenceVAEModel):
        return model.decode_mean(z)
    if config.sequence_decoding == "free-running":
        return model.decoder.soft_rollout(z, config.decode_length)
    return teacher_forced_soft_tokens(model.decode_given(z, x), x)


def latent_reconstruction(model: VAEModel, out: VAEOutput, config: LRVAEConfig, x: Tensor) -> Tensor:
    """L_LR = ||E_mu(D(z)) - target||^2 summed over latents, averaged over the S samples and
    (``lr_reduction = "mean"``) over the B examples of ``out`` (the batch ``x``), or summed over
    them (``"sum"``)."""
    s, scale = config.num_samples, config.encoder_grad_scale
    if config.z_source == "prior":
        z = torch.randn(s, *out.mu.shape, dtype=out.mu.dtype, device=out.mu.device)
        target = z
    else:
        z = torch.stack([out.z, *(model.sample(out.mu, out.logvar) for _ in range(s - 1))])  # [S, B, d]
        target = z if config.z_source == "posterior" else out.mu.expand_as(z)
        # z and mu depend on the encoder's parameters only: scale that path of the gradient too.
        if scale != 1.0:
            z, target = _ScaleGrad.apply(z, scale), _ScaleGrad.apply(target, scale)
    if config.stop_gradient == "z":
        z, target = z.detach(), target.detach()
    decoded = decode_for_lr(model, z.flatten(0, 1), x.repeat(s, *([1] * (x.dim() - 1))), config)  # [S * B, ...]
    if config.stop_gradient == "decoded":
        decoded = decoded.detach()
    error = (_encoder_mean(model, decoded, scale).view_as(z) - target).square().sum(-1)  # [S, B]
    per_example = error.mean(0)
    return per_example.mean() if config.lr_reduction == "mean" else per_example.sum()


@register_method
class LRVAE(Method):
    """LR-VAE (Song et al. 2025): rec + beta * KL + alpha(t) * ||E_mu(D(z)) - z||^2."""

    name = "lr-vae"
    packable = True
    pack_scalars = ("beta", "alpha_T")
    Config = LRVAEConfig

    def __init__(self, config: LRVAEConfig, model_config: ModelConfig):
        super().__init__(config, model_config)
        self.alpha_schedule = make_schedule(config.alpha_schedule, config.alpha_T, **config.alpha_schedule_options)
        self.register_buffer("last_kl", torch.zeros(()))  # previous step's batch KL (kl-adaptive); in checkpoints

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor | float]:
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        alpha = self.alpha_schedule(progress, self.last_kl)
        self.last_kl.copy_(kl.detach())
        lr = latent_reconstruction(self.model, out, self.config, x)
        loss = rec + self.config.beta * kl + alpha * lr
        return {"loss": loss, "rec": rec, "kl": kl, "lr": lr, "alpha": alpha}
