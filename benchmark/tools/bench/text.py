"""The ``text`` section: a training step of the LSTM text VAE (``lstm-ptb``, the ``vae`` method,
Penn Treebank) through the harness against a hand-written PyTorch loop with the same math.

The issue's bound: a harness step costs at most :data:`~.common.TEXT_STEP_BOUND` (1.2) times a
minimal LSTM VAE step of the same sizes on the same batches. Both arms train copies of one model
(the same initial weights) with the same optimiser on the same length-bucketed batches
(:func:`benchmark.ml.train.length_buckets` from generators of one seed), one epoch each in turn.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...config import ModelConfig, TrainConfig
from ...data.catalog import load_dataset
from ...data.vocabulary import PAD_ID, SequenceShape
from ...errors import BenchmarkError
from ...ml.archs import architecture
from ...ml.method import build_method
from ...ml.train import Trainer, length_buckets
from .common import TEXT_STEP_BOUND, Clock, Settings, compare, median, rotate, timed


def text_model_config(arch: str, latent_dim: int) -> ModelConfig:
    return ModelConfig(arch=arch, latent_dim=latent_dim, likelihood="categorical")


class MinimalLSTMVAE(nn.Module):
    """He et al.'s text VAE written out, with the ``vae`` method's math on the ``lstm`` presets:

    encoder: embedding -> LSTM -> hidden state at each sentence's last token -> Linear ->
    (mu, logvar); z = mu + sigma eps (``randn_like``, drawn before the decoder's dropout masks, as
    the harness); decoder: dropout(embedding of x[:, :-1]) with z concatenated at every step ->
    LSTM from (h0, c0) = (tanh(Linear(z)), Linear(z)) -> dropout -> vocabulary layer (no bias);
    loss = mean over sentences of the cross-entropy summed over the predicted tokens x[:, 1:]
    (padding ignored) + mean KL.
    """

    def __init__(self, vocab_size: int, embed: int, hidden: int, latent_dim: int, dropout_in: float = 0.5,
                 dropout_out: float = 0.5):
        super().__init__()
        # in the harness's parameter order (encoder, then decoder), for :meth:`like`
        self.enc_embedding = nn.Embedding(vocab_size, embed)
        self.enc_lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.enc_head = nn.Linear(hidden, 2 * latent_dim)
        self.dec_embedding = nn.Embedding(vocab_size, embed)
        self.dec_lstm = nn.LSTM(embed + latent_dim, hidden, batch_first=True)
        self.dec_init = nn.Linear(latent_dim, hidden)
        self.dec_out = nn.Linear(hidden, vocab_size, bias=False)
        self.drop_in, self.drop_out = nn.Dropout(dropout_in), nn.Dropout(dropout_out)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Loss of ids ``x`` [B, T] (T: the batch's longest sentence) of ``lengths`` [B] tokens."""
        batch, steps = x.shape[0], x.shape[1] - 1
        out, _ = self.enc_lstm(self.enc_embedding(x))
        mu, logvar = self.enc_head(out[torch.arange(batch, device=x.device), lengths - 1]).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        inputs = torch.cat([self.drop_in(self.dec_embedding(x[:, :-1])), z[:, None, :].expand(-1, steps, -1)], dim=-1)
        c0 = self.dec_init(z)[None]
        out, _ = self.dec_lstm(inputs, (torch.tanh(c0), c0))
        logits = self.dec_out(self.drop_out(out))
        rec = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), ignore_index=PAD_ID,
                              reduction="sum") / batch
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        return rec + kl.mean()

    @classmethod
    def like(cls, model: nn.Module, model_config: ModelConfig, shape: SequenceShape) -> "MinimalLSTMVAE":
        """Same sizes and the same initial weights as the harness's ``model`` (a SequenceVAE of an
        ``lstm`` preset with z at every input and in the initial state, the default)."""
        arch = architecture(model_config)
        if not (arch.z_input and arch.z_init) or model_config.posterior_variance != "logvar":
            raise ValueError("the minimal LSTM VAE has z at every decoder input and in its initial state, and "
                             "logvar posteriors")
        minimal = cls(shape.vocab_size, arch.embed, arch.hidden, model_config.latent_dim, arch.dropout_in,
                      arch.dropout_out)
        src, dst = list(model.parameters()), list(minimal.parameters())
        if [p.shape for p in src] != [p.shape for p in dst]:
            raise RuntimeError("the minimal LSTM VAE does not match the harness's model")
        with torch.no_grad():
            for d, s in zip(dst, src):
                d.copy_(s)
        return minimal.to(src[0].device)


def minimal_text_epoch(model: MinimalLSTMVAE, optimizer: torch.optim.Optimizer, x: Tensor, lengths: Tensor,
                       lengths_on_device: Tensor, batch_size: int, order: torch.Generator) -> float:
    """One epoch of the plain loop over length buckets (``lengths`` [N] on the CPU, the same on
    x's device): slice, trim to the batch's longest sentence, forward, backward, step; mean loss."""
    model.train()
    total = torch.zeros((), device=x.device)
    for index in length_buckets(lengths, batch_size, order):
        longest = int(lengths[index].max())  # CPU tensor: no device sync
        index = index.to(x.device)
        loss = model(x[index, :longest], lengths_on_device[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * index.shape[0]
    return float(total) / x.shape[0]


def harness_text_method(arch: str, latent_dim: int, shape: SequenceShape, device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    return build_method("vae", {}, text_model_config(arch, latent_dim), shape).to(device)


def load_text(settings: Settings, device: torch.device):
    """PTB's training subset (ids [N, T_max] on ``device``, lengths [N] on the CPU) and its shape,
    or None and why it could not be loaded."""
    try:
        data = load_dataset("ptb", data_root=settings.data_root, seed=0, train_size=settings.text_sentences,
                            test_size=1, device=device)
    except BenchmarkError as exc:
        return None, f"ptb not available: {str(exc).splitlines()[0]}"
    return (data.train.x, data.train.lengths.cpu(), data.shape), None


def bench_text(settings: Settings, device: torch.device, clock: Clock) -> dict[str, Any]:
    """Per preset: the harness's epoch (:class:`Trainer` of the ``vae`` method, a pack of one,
    with ``lengths``) against :func:`minimal_text_epoch`, interleaved (A B, B A, ...), on the same
    batches, ``text_epochs`` timed epochs each after one warm-up. ``harness_vs_minimal`` is
    :func:`.common.compare`'s (minimal time / harness time, paired: the harness's speed relative
    to the minimal loop, 1 = as fast); ``harness_step_cost`` is its inverse (harness time /
    minimal time), which the bound (:data:`.common.TEXT_STEP_BOUND`, 1.2) caps. Skipped, with the
    reason, when PTB cannot be loaded."""
    loaded, why = load_text(settings, device)
    if loaded is None:
        return {"skipped": why, "bound": TEXT_STEP_BOUND}
    x, lengths, shape = loaded
    bs, repeats = settings.text_batch_size, settings.text_epochs
    lengths_on_device = lengths.to(device)
    out: dict[str, Any] = {"data": f"ptb train subset ({x.shape[0]} sentences, {float(lengths.float().mean()):.1f} "
                                   f"tokens on average)", "sentences": x.shape[0], "batch_size": bs,
                           "steps_per_epoch": None, "epochs_timed": repeats, "bound": TEXT_STEP_BOUND,
                           "latent_dim": settings.text_latent_dim, "presets": {},
                           "ratio_convention": "harness_vs_minimal = minimal time / harness time (speed, >1: harness "
                                               "faster); harness_step_cost = harness time / minimal time (the bound's "
                                               "quantity, <= 1.2 required)"}
    for arch in settings.text_presets:
        model_config = text_model_config(arch, settings.text_latent_dim)
        method = harness_text_method(arch, settings.text_latent_dim, shape, device)
        minimal = MinimalLSTMVAE.like(method.model, model_config, shape)
        config = TrainConfig(epochs=10**9, batch_size=bs)
        trainer = Trainer([method], [x], config, [torch.Generator().manual_seed(1)], lengths=lengths)
        fused = bool(trainer.step.optimizer.defaults.get("fused"))  # the same optimiser as the harness's
        opt = torch.optim.Adam(minimal.parameters(), lr=config.lr, fused=fused)
        order = torch.Generator().manual_seed(1)
        arms = {"harness": lambda: trainer.run_epoch(),
                "minimal": lambda: minimal_text_epoch(minimal, opt, x, lengths, lengths_on_device, bs, order)}
        times: dict[str, list[float]] = {k: [] for k in arms}
        for r in range(repeats + 1):
            for name in rotate(list(arms), r):
                t0 = clock()
                arms[name]()
                times[name].append(clock() - t0)
        steps = trainer.steps_per_epoch
        out["steps_per_epoch"] = steps
        speed = compare(times["harness"], times["minimal"])
        cost = 1 / speed["ratio"] if speed["ratio"] > 0 else float("nan")
        arch_obj = architecture(model_config)
        out["presets"][arch] = {
            "embed": arch_obj.embed, "hidden": arch_obj.hidden, "vocab_size": shape.vocab_size,
            "parameters": sum(p.numel() for p in method.parameters()), "fused_adam": fused,
            "epoch_s": {k: median(timed(v)) for k, v in times.items()},
            "step_ms": {k: 1000 * median(timed(v)) / steps for k, v in times.items()},
            "harness_vs_minimal": speed, "harness_step_cost": cost, "meets_bound": bool(cost <= TEXT_STEP_BOUND),
            "times_s": times,
        }
    return out


def format_text(section: dict[str, Any]) -> list[str]:
    """The table's lines for the text section."""
    if "skipped" in section:
        return ["", f"text (LSTM) step: skipped: {section['skipped']}"]
    lines = ["", f"text (LSTM) step: harness (Trainer, vae, length buckets) vs a hand-written LSTM VAE loop, "
                 f"{section['epochs_timed']} interleaved epochs of {section['sentences']} PTB sentences, batch "
                 f"{section['batch_size']} ({section['steps_per_epoch']} steps); cost = harness time / minimal time"]
    for name, p in section["presets"].items():
        ms = p["step_ms"]
        lines.append(f"  {name:<11} (embed {p['embed']}, hidden {p['hidden']}): harness {ms['harness']:.1f} ms/step, "
                     f"minimal {ms['minimal']:.1f} ms/step: cost {p['harness_step_cost']:.3f}x "
                     f"(bound {section['bound']}x: {'ok' if p['meets_bound'] else 'MISS'})")
    return lines
