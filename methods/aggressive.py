"""Aggressive inference network optimisation (He et al. 2019, "lagging inference networks"):
while aggressive, the encoder is trained to convergence on fresh minibatches before each decoder
step; aggressive training ends for good once the mutual information on the validation split (held
out from the training data, never the test split) stops rising."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch import Tensor

from benchmark.plugin import Method, ModelConfig, StepTools, TrainingProgress, make_schedule, mutual_information
from benchmark.plugin import register_method, setting

Mixture = Literal["all", "batch"]
ENCODE_BATCH = 1000  # held-out examples encoded at a time for the MI check


@dataclass
class AggressiveConfig:
    """Aggressive training's inner loop, its KL warm-up and its held-out MI check."""

    beta_start: float = setting(1.0, "[0, 1]", doc="KL weight at the first step, rising linearly to 1 over the warm-up (1: "
                                                 "no annealing, the image code's default; He et al.'s text runs start at "
                                                 "0.1 with 10 warm-up epochs)")
    warmup: float = setting(1.0, "(0, 1]", doc="fraction of the run over which the KL weight rises to 1 (ignored when "
                                             "beta_start = 1)")
    block: int = setting(10, "[1, inf)", doc="inner encoder steps per block; the inner loop stops when a block's mean loss "
                                           "exceeds the previous block's (the image code: 10; the text code: 15)")
    max_inner_steps: int = setting(100, "[1, inf)", doc="most encoder-only steps before each decoder step (the public "
                                                      "code's loop test sub_iter < 100 allows 99)")
    mi_patience: int = setting(1, "[1, inf)", doc="held-out MI checks (one per epoch, while aggressive) below the best so "
                                                "far before aggressive training stops for good (1: the paper and the text "
                                                "code, stop at the first drop; the image code: 5)")
    valid_fraction: float = setting(0.1, "(0, 1)", doc="fraction of the training examples held out as the validation split "
                                                     "the MI check runs on (data sets with a published validation split "
                                                     "use that one); the test split is never used for this decision")
    mi_examples: int = setting(0, "[0, inf)", doc="first examples of the validation split the MI is estimated on (0: all "
                                                "of it)")
    mi_mixture: Mixture = setting("all", doc="the MI estimator's aggregate posterior: all (the whole held-out set, the "
                                             "harness's estimator) or batch (He et al.'s per-minibatch mixture)")
    mi_batch_size: int = setting(50, "[2, inf)", doc="minibatch size of mi_mixture = batch")


class BlockStop:
    """He et al.'s inner-loop rule, for K runs taking their inner steps together (one run alone:
    K = 1): after every ``block`` steps, a run stops when its block's mean per-example loss
    exceeds its previous block's (the first block is always kept); every run stops after
    ``max_steps`` steps. ``active[k]``: run k is still stepping (the runs not aggressive start
    stopped). :meth:`add` takes each step's batch-mean losses (a 0-d tensor or [K]: read back once
    per block) and says whether any run takes another step; ``taken[k]``: the steps run k took."""

    def __init__(self, block: int, max_steps: int, active: Sequence[bool] = (True,)):
        self.block, self.max_steps = block, max_steps
        self.active = list(active)
        self.taken = [0] * len(self.active)
        self.steps, self.examples = 0, 0
        self.block_sum: Tensor | float = 0.0
        self.previous = [math.inf] * len(self.active)

    def add(self, loss: Tensor, examples: int) -> bool:
        self.steps += 1
        self.taken = [t + a for t, a in zip(self.taken, self.active)]
        self.block_sum = self.block_sum + loss.detach() * examples
        self.examples += examples
        if self.steps % self.block == 0:
            means = [value / self.examples for value in torch.as_tensor(self.block_sum).reshape(-1).tolist()]
            for k, mean in enumerate(means):
                if self.active[k] and mean > self.previous[k]:
                    self.active[k] = False
                self.previous[k] = mean
            self.block_sum, self.examples = 0.0, 0
        if self.steps >= self.max_steps:
            self.active = [False] * len(self.active)
        return any(self.active)


@register_method
class Aggressive(Method):
    """Aggressive inference (He et al. 2019): encoder-only steps to convergence before each decoder step, until the held-out MI stops rising; rec + beta KL."""

    name = "aggressive"
    Config = AggressiveConfig
    packable = True

    def __init__(self, config: AggressiveConfig, model_config: ModelConfig):
        super().__init__(config, model_config)
        self.beta_schedule = make_schedule("linear", 1.0, start=config.beta_start, duration=config.warmup)
        self.aggressive = True
        self.best_mi = 0.0  # the public code starts its comparison at MI = 0
        self.misses = 0
        self.mi_checks: list[float] = []
        self.inner_steps_per_epoch: list[int] = []
        self.epoch_inner = 0
        self.stopped_after_epoch: int | None = None
        self.held_out_examples = 0

    def loss(self, x: Tensor, progress: TrainingProgress) -> dict[str, Tensor | float]:
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        beta = self.beta_schedule(progress)
        return {"loss": rec + beta * kl, "rec": rec, "kl": kl, "beta": beta}

    def training_step(self, x: Tensor, progress: TrainingProgress, tools: StepTools) -> dict[str, Any]:
        if not self.aggressive:
            parts = self.loss(x, progress)
            tools.step(parts["loss"])
            return {**parts, "inner_steps": 0.0, "aggressive": 0.0}
        encoder, decoder = list(self.model.encoder.parameters()), list(self.model.decoder.parameters())
        rule = BlockStop(self.config.block, self.config.max_inner_steps)
        batch = x  # the first inner step uses the decoder step's own batch, as the public code
        while True:
            parts = self.loss(batch, progress)
            tools.step(parts["loss"], encoder)
            if not rule.add(parts["loss"], batch.shape[0]):
                break
            batch = tools.fresh_batch()
        parts = self.loss(x, progress)
        tools.step(parts["loss"], decoder)
        self.epoch_inner += rule.steps
        return {**parts, "inner_steps": float(rule.steps), "aggressive": 1.0}

    def pack_training_step(self, runs: Sequence[Aggressive], x: Tensor, progress: TrainingProgress,
                           tools: Any) -> dict[str, Any]:
        """:meth:`training_step` for a pack: the aggressive runs take their encoder-only steps
        together, each stopping on its own block rule (a stopped run sits the others' steps out),
        then every run takes its decoder step (a run no longer aggressive: its one ordinary step)."""
        aggressive = [run.aggressive for run in runs]
        rule = BlockStop(self.config.block, self.config.max_inner_steps, aggressive)
        encoder, decoder = tools.parameters("model.encoder"), tools.parameters("model.decoder")
        batch = x  # the first inner step uses the decoder step's own batch, as the public code
        while any(rule.active):
            parts = tools.loss(batch, progress, rule.active)
            tools.step(parts["loss"], [(encoder, rule.active)])
            if rule.add(parts["loss"], batch.shape[1]):
                batch = tools.fresh_batches(rule.active)
        parts = tools.loss(x, progress)
        rest = [p for p in tools.parameters() if not any(p is q for q in decoder)]
        tools.step(parts["loss"], [(decoder, [True] * len(runs)), (rest, [not a for a in aggressive])])
        for run, steps in zip(runs, rule.taken):
            run.epoch_inner += steps
        return {**parts, "inner_steps": torch.tensor(rule.taken, dtype=torch.float32),
                "aggressive": torch.tensor(aggressive, dtype=torch.float32)}

    def validation_fraction(self) -> float:
        return self.config.valid_fraction

    def on_epoch_end(self, epoch: int, held_out: Tensor | None) -> None:
        self.inner_steps_per_epoch.append(self.epoch_inner)
        self.epoch_inner = 0
        if not self.aggressive or held_out is None:  # None: the bench (no held-out data), it stays aggressive
            return
        self.held_out_examples = held_out[:self.config.mi_examples or None].shape[0]
        mi = self.held_out_mi(held_out)
        self.mi_checks.append(mi)
        if mi < self.best_mi:
            self.misses += 1
            if self.misses >= self.config.mi_patience:
                self.aggressive, self.stopped_after_epoch = False, epoch + 1
        else:
            self.best_mi = mi

    @torch.no_grad()
    def held_out_mi(self, held_out: Tensor) -> float:
        """I_q(x; z) in nats on the first ``mi_examples`` held-out examples, in eval mode."""
        x = held_out[:self.config.mi_examples or None]
        self.eval()
        try:
            parts = [self.model.encode(x[i:i + ENCODE_BATCH]) for i in range(0, x.shape[0], ENCODE_BATCH)]
        finally:
            self.train()
        mu, logvar = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return mutual_information(mu, logvar, mixture=self.config.mi_mixture, batch_size=self.config.mi_batch_size)["mi"]

    def get_extra_state(self) -> dict[str, Any]:
        return {"aggressive": self.aggressive, "best_mi": self.best_mi, "misses": self.misses,
                "mi_checks": list(self.mi_checks), "inner_steps_per_epoch": list(self.inner_steps_per_epoch),
                "epoch_inner": self.epoch_inner, "stopped_after_epoch": self.stopped_after_epoch,
                "held_out_examples": self.held_out_examples}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.aggressive, self.best_mi, self.misses = state["aggressive"], state["best_mi"], state["misses"]
        self.mi_checks, self.inner_steps_per_epoch = list(state["mi_checks"]), list(state["inner_steps_per_epoch"])
        self.epoch_inner, self.stopped_after_epoch = state["epoch_inner"], state["stopped_after_epoch"]
        self.held_out_examples = state.get("held_out_examples", 0)

    def record_extras(self) -> dict[str, Any]:
        return {"inner_steps_per_epoch": list(self.inner_steps_per_epoch),
                "inner_steps_total": sum(self.inner_steps_per_epoch) + self.epoch_inner,
                "aggressive_stopped_after_epoch": self.stopped_after_epoch,
                "held_out_mi_checks": list(self.mi_checks),
                "mi_data": f"the run's validation split ({self.held_out_examples} examples; never the test split)"}
