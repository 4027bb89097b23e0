"""Sequence (text) VAEs: an LSTM encoder and an LSTM decoder over token ids, the model that ties
them to the categorical likelihood, and the LSTM architectures.

Shapes: a sentence is ``x`` int64 [B, T] token ids ``<s> w1 ... wn </s>`` padded with ``<pad>``
(id 0), T <= T_max; its predicted tokens are ``x[:, 1:]`` (``</s>`` included, ``<s>`` never
predicted, padding masked). The decoder reads ``x[:, :-1]`` and z [B, d] and returns logits
[B, T - 1, V]. An encoder also reads *soft tokens*: float [B, T, V] rows that are distributions
over the vocabulary (all-zero rows are padding), embedded as expected embeddings (LR-VAE's
decoded sentences). The skeleton is the lagging-encoder code's (He et al. 2019): the encoder's
last hidden state -> (mu, logvar); z concatenated to every decoder input embedding and the
decoder's initial state a linear map of z (both options); dropout on the decoder's input
embeddings and output; at init (``init = "uniform"``) every weight uniform in +-0.01 and the
embeddings in +-0.1, as that code, or (``"torch"``) PyTorch's own defaults, as the BN-VAE
authors' encoder (their code comments the uniform init out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import PosteriorVariance, setting
from ..data.vocabulary import BOS_ID, EOS_ID, PAD_ID, SequenceShape
from .icnn import ICNNInit, LIDDecoder
from .likelihoods import Likelihood
from .models import Architecture, VAEModel, VAEOutput

INIT_WEIGHT, INIT_EMBEDDING = 0.01, 0.1  # the reference code's uniform init ranges
SequenceInit = Literal["uniform", "torch"]
LOGIT_TOKENS = 4096  # tokens whose logits are formed at a time when scoring many sentences


def lengths_of(x: Tensor) -> Tensor:
    """Tokens per sentence [B] (``<s>`` and ``</s>`` included) of ids [B, T] or soft tokens [B, T, V]."""
    return (x != PAD_ID).sum(1) if x.dim() == 2 else (x.sum(-1) > 0).sum(1)


def chunk_end(sorted_lengths: list[int], start: int, tokens: int) -> int:
    """The end of the chunk of pairs starting at ``start`` (``sorted_lengths`` ascending): as many
    as keep (pairs x the chunk's longest length) within ``tokens``, at least one."""
    end = start + 1
    while end < len(sorted_lengths) and (end + 1 - start) * sorted_lengths[end] <= tokens:
        end += 1
    return end


def trim(x: Tensor) -> Tensor:
    """``x`` [B, T(, V)] without the trailing positions that are padding in every sentence."""
    return x[:, :int(lengths_of(x).max())] if x.shape[0] else x


def embed(embedding: nn.Embedding, x: Tensor) -> Tensor:
    """Embeddings [B, T, E] of ids [B, T], or expected embeddings of soft tokens [B, T, V]."""
    return embedding(x) if x.dim() == 2 else x @ embedding.weight


def _initialise(module: nn.Module, init: SequenceInit) -> None:
    """The lagging-encoder code's uniform init (``"uniform"``) or PyTorch's defaults (``"torch"``,
    left as built)."""
    if init == "torch":
        return
    if init != "uniform":
        raise ValueError(f"unknown init {init!r}; valid: uniform, torch")
    for name, p in module.named_parameters():
        bound = INIT_EMBEDDING if "embedding" in name else INIT_WEIGHT
        nn.init.uniform_(p, -bound, bound)


class LSTMEncoder(nn.Module):
    """x [B, T] ids or [B, T, V] soft tokens -> (mu, raw_logvar), each [B, d]: a one-layer LSTM
    over the word embeddings, its hidden state at each sentence's last token through a linear map."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, latent_dim: int, init: SequenceInit = "uniform"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2 * latent_dim)
        _initialise(self, init)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = trim(x)
        out, _ = self.lstm(embed(self.embedding, x))  # [B, T, H]; causal, so padding after the end changes nothing
        last = out[torch.arange(x.shape[0], device=x.device), lengths_of(x) - 1]
        mu, raw_logvar = self.head(last).chunk(2, dim=-1)
        return mu, raw_logvar


class LSTMDecoder(nn.Module):
    """(z [B, d], x [B, T]) -> logits [B, T - 1, V] of the tokens x[:, 1:] given x[:, :-1] and z.

    ``z_input``: z concatenated to every input embedding; ``z_init``: the initial cell state a
    linear map of z (hidden state its tanh), else zero; ``z_output``: z also concatenated to the
    LSTM's output before the vocabulary layer (skip-VAE's path into every step's output; off by
    default). Dropout ``dropout_in`` on the input embeddings, ``dropout_out`` on the LSTM output.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, latent_dim: int, z_input: bool = True,
                 z_init: bool = True, z_output: bool = False, dropout_in: float = 0.5, dropout_out: float = 0.5,
                 init: SequenceInit = "uniform"):
        super().__init__()
        self.latent_dim, self.z_input, self.z_output = latent_dim, z_input, z_output
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim + latent_dim * z_input, hidden, batch_first=True)
        self.init_state = nn.Linear(latent_dim, hidden) if z_init else None
        self.output = nn.Linear(hidden + latent_dim * z_output, vocab_size, bias=False)
        self.dropout_in, self.dropout_out = nn.Dropout(dropout_in), nn.Dropout(dropout_out)
        _initialise(self, init)

    def states(self, z: Tensor, x: Tensor) -> Tensor:
        """The features the vocabulary layer reads at each predicted position: [B, T - 1, H (+ d)]."""
        inputs = self.dropout_in(embed(self.embedding, x[:, :-1]))
        steps = inputs.shape[1]
        if self.z_input:
            inputs = torch.cat([inputs, z[:, None, :].expand(-1, steps, -1)], dim=-1)
        state = None
        if self.init_state is not None:
            c0 = self.init_state(z)[None]
            state = (torch.tanh(c0), c0)
        out, _ = self.lstm(inputs, state)
        out = self.dropout_out(out)
        return torch.cat([out, z[:, None, :].expand(-1, steps, -1)], dim=-1) if self.z_output else out

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        return self.output(self.states(z, x))

    def soft_rollout(self, z: Tensor, steps: int) -> Tensor:
        """Free-running decoding with soft tokens: from ``<s>``, each step's softmax fed back as
        the next input's expected embedding; returns soft tokens [B, steps + 1, V] (the first row
        ``<s>`` one-hot), differentiable in z and in every weight."""
        vocab = self.output.out_features
        first = F.one_hot(torch.full(z.shape[:1], BOS_ID, device=z.device), vocab).to(z.dtype)
        rows, token, state = [first], first, None
        if self.init_state is not None:
            c0 = self.init_state(z)[None]
            state = (torch.tanh(c0), c0)
        for _ in range(steps):
            inp = self.dropout_in(embed(self.embedding, token[:, None, :]))
            if self.z_input:
                inp = torch.cat([inp, z[:, None, :]], dim=-1)
            out, state = self.lstm(inp, state)
            out = self.dropout_out(out)
            if self.z_output:
                out = torch.cat([out, z[:, None, :]], dim=-1)
            token = self.output(out)[:, 0].softmax(-1)
            rows.append(token)
        return torch.stack(rows, dim=1)


def teacher_forced_soft_tokens(logits: Tensor, x: Tensor) -> Tensor:
    """The soft sentence a teacher-forced decoding gives: ``<s>`` one-hot, then the decoder's
    distributions (softmax of ``logits`` [B, T' - 1, V]) at the positions of x's tokens, zero rows
    (padding) after each sentence's end; [B, T', V]."""
    probs = logits.softmax(-1) * (x[:, 1:logits.shape[1] + 1] != PAD_ID)[..., None]
    first = F.one_hot(torch.full(logits.shape[:1], BOS_ID, device=logits.device), logits.shape[-1]).to(probs.dtype)
    return torch.cat([first[:, None, :], probs], dim=1)


def sequence_decoder(shape: SequenceShape, model_config, **overrides) -> LSTMDecoder:
    """The LSTM decoder of ``model_config``'s architecture for data of ``shape``, with some of its
    conditioning changed (``z_input``, ``z_init``, ``z_output``): what a method that replaces the
    decoder (``build_decoder``) builds."""
    from .archs import architecture

    arch = architecture(model_config)
    options = {"z_input": arch.z_input, "z_init": arch.z_init, **overrides}
    return LSTMDecoder(shape.vocab_size, arch.embed, arch.hidden, model_config.latent_dim, dropout_in=arch.dropout_in,
                       dropout_out=arch.dropout_out, init=arch.init, **options)


class PriorEncoder(nn.Module):
    """q(z|x) = p(z) = N(0, I) for every x: (mu, logvar) = (0, 0) [B, d], no parameters (the
    language model's posterior: KL, AU and MI are exactly 0 and the IW-NLL is its exact NLL)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        zeros = torch.zeros((x.shape[0], self.latent_dim), device=x.device)
        return zeros, zeros


class LIDSequenceDecoder(nn.Module):
    """The LID authors' sequential decoder (LIDSVAE): an LSTM over the previous tokens whose state
    never sees z (its initial state a linear map of a constant), and at every step the logits
    ``grad G2(Bmat grad G1([h_t; z]))`` of an injective :class:`~.icnn.LIDDecoder` over
    [h_t; z] (dimension H + d) into the vocabulary: z reaches the logits only through the
    injective path, so for each prefix the map z -> logits is injective (inverse-Lipschitz with
    ``lam1``, ``lam2`` > 0). Dropout on the input embeddings and on h_t."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, latent_dim: int, hidden_latent: int,
                 hidden_data: int, num_layers: int = 2, trainable_lift: bool = False, s_min: float = 1.0,
                 s_max: float = 10.0, init: ICNNInit = "fan-in", gain: float = 1.0, dropout_in: float = 0.5,
                 dropout_out: float = 0.5, lstm_init: SequenceInit = "uniform"):
        super().__init__()
        self.latent_dim = latent_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.init_state = nn.Linear(latent_dim, hidden)
        self.dropout_in, self.dropout_out = nn.Dropout(dropout_in), nn.Dropout(dropout_out)
        _initialise(self, lstm_init)
        self.lid = LIDDecoder(hidden + latent_dim, (vocab_size,), hidden_latent, hidden_data, num_layers,
                              trainable_lift=trainable_lift, s_min=s_min, s_max=s_max, init=init, gain=gain)

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        inputs = self.dropout_in(embed(self.embedding, x[:, :-1]))
        c0 = self.init_state(torch.ones_like(z))[None]  # as the reference: a state independent of z
        out, _ = self.lstm(inputs, (torch.tanh(c0), c0))
        h = self.dropout_out(out)
        return self.lid(torch.cat([h, z[:, None, :].expand(-1, h.shape[1], -1)], dim=-1))

    # the LID decoder's interface (il-lid-vae sets and reads its constants through it)
    @property
    def lift(self):
        return self.lid.lift

    @property
    def latent_map(self):
        return self.lid.latent_map

    def set_strong_convexity(self, lam1: float | Tensor, lam2: float | Tensor) -> None:
        self.lid.set_strong_convexity(lam1, lam2)

    @property
    def inverse_lipschitz(self) -> float:
        return self.lid.inverse_lipschitz


class SequenceVAEModel(VAEModel):
    """A VAE over sentences: q(z|x) from the encoder, prior N(0, I), p(x|z) = prod_t
    Cat(x_t | decoder logits given x_<t and z). Every per-sentence quantity (``rec``, ``kl``,
    log-likelihoods) is in nats per sentence."""

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """Logits [B, T - 1, V] of x's tokens given their prefixes and z [B, d] (teacher forcing)."""
        if x is None:
            raise TypeError("a sequence decoder needs the sentence it scores: decode(z, x)")
        return self.decoder(z, x)

    def decode_mean(self, z: Tensor, x: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """The decoder's token distributions [B, T - 1, V] (teacher forcing)."""
        return self.decode(z, x).softmax(-1)

    def decode_given(self, z: Tensor, x: Tensor) -> Tensor:
        """Logits [B, T' - 1, V] of x's tokens given their prefixes and z (x trimmed to T' tokens)."""
        return self.decoder(z, trim(x))

    def forward(self, x: Tensor) -> VAEOutput:
        x = trim(x)
        mu, logvar = self.encode(x)
        z = self.sample(mu, logvar)
        logits = self.decoder(z, x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        return VAEOutput(mu, logvar, z, logits, self.likelihood.rec(logits, x), kl)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) [S, B] for latents z [S, B, d] (nats per sentence). The (sample, sentence)
        pairs are scored in order of sentence length, at most :data:`LOGIT_TOKENS` tokens at a time
        (a longer sentence alone), each chunk trimmed to its longest sentence: S x B may be large and the
        lengths mixed."""
        samples, batch = z.shape[:2]
        flat_z = z.reshape(samples * batch, -1)
        pair_lengths = lengths_of(x).repeat(samples)  # pair i scores sentence i % B
        order = torch.argsort(pair_lengths, stable=True)
        sorted_lengths = pair_lengths[order].tolist()
        out = torch.empty(samples * batch, dtype=z.dtype, device=z.device)
        start = 0
        while start < len(order):
            end = chunk_end(sorted_lengths, start, LOGIT_TOKENS)
            rows = order[start:end]
            sentences = x[rows % batch, :sorted_lengths[end - 1]]
            out[rows] = self.likelihood.log_prob(self.decoder(flat_z[rows], sentences), sentences).to(z.dtype)
            start = end
        return out.reshape(samples, batch)

    @torch.no_grad()
    def generate(self, z: Tensor, max_length: int) -> Tensor:
        """Greedy decoding from z [B, d]: ids [B, <= max_length] starting with ``<s>``, padded
        after each sentence's ``</s>`` (re-reading the prefix each step: for samples, not speed)."""
        x = torch.full((z.shape[0], 1), BOS_ID, dtype=torch.long, device=z.device)
        done = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
        for _ in range(max_length - 1):
            step = self.decoder(z, torch.cat([x, torch.zeros_like(x[:, :1])], dim=1))[:, -1].argmax(-1)
            step = torch.where(done, torch.full_like(step, PAD_ID), step)
            x = torch.cat([x, step[:, None]], dim=1)
            done |= step == EOS_ID
            if bool(done.all()):
                break
        return x


@dataclass
class LSTMArch(Architecture):
    """One-layer LSTM encoder and decoder over word embeddings (He et al. 2019's text VAE).

    The decoder reads z at every step (``z_input``) and starts from a state made from z
    (``z_init``); ``init``: uniform (He et al.'s +-0.01, embeddings +-0.1) or torch (PyTorch's
    defaults, the BN-VAE code's encoder); ``max_length`` (0: none) refuses data with longer sentences.
    """

    kind: ClassVar[str] = "sequence"
    embed: int = setting(256, "[1, inf)")
    hidden: int = setting(256, "[1, inf)")
    dropout_in: float = setting(0.5, "[0, 1)")
    dropout_out: float = setting(0.5, "[0, 1)")
    z_input: bool = True
    z_init: bool = True
    init: SequenceInit = "uniform"
    max_length: int = setting(0, "[0, inf)")

    def shape_problem(self, shape: tuple[int, ...] | SequenceShape) -> str | None:
        """Why data of this shape cannot go through this architecture (None: it can)."""
        if not isinstance(shape, SequenceShape):
            return (f"an LSTM reads sentences of token ids, not examples of shape {list(shape)}: use a text data set "
                    "(ptb, yahoo, yelp)")
        if self.max_length and shape.max_length > self.max_length:
            return (f"its longest sentence has {shape.max_length} tokens (<s> and </s> included), more than this "
                    f"model's max_length = {self.max_length}: raise max_length (0: no limit)")
        if not (self.z_input or self.z_init):
            return "a decoder with neither z_input nor z_init never sees z: set one of them"
        return None

    def build(self, shape: SequenceShape, latent_dim: int) -> tuple[nn.Module, nn.Module]:
        why = self.shape_problem(shape)
        if why is not None:
            raise ValueError(why)
        encoder = LSTMEncoder(shape.vocab_size, self.embed, self.hidden, latent_dim, self.init)
        decoder = LSTMDecoder(shape.vocab_size, self.embed, self.hidden, latent_dim, self.z_input, self.z_init,
                              dropout_in=self.dropout_in, dropout_out=self.dropout_out, init=self.init)
        return encoder, decoder

    def model(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood,
              posterior_variance: PosteriorVariance) -> VAEModel:
        return SequenceVAEModel(encoder, decoder, likelihood, posterior_variance)


@dataclass
class LSTMPTBArch(LSTMArch):
    """``lstm`` at the PTB size of the text-VAE literature (bn-vae, vae-pretraining-encoder):
    embedding 256, hidden 256 (z 32 by the grids)."""


@dataclass
class LSTMYahooArch(LSTMArch):
    """``lstm`` at the Yahoo / Yelp size of the lagging-encoder code: embedding 512, hidden 1024."""

    embed: int = setting(512, "[1, inf)")
    hidden: int = setting(1024, "[1, inf)")


@dataclass
class LSTMSmallArch(LSTMArch):
    """A small ``lstm`` for CPU grids: embedding 64, hidden 128 (the same skeleton)."""

    embed: int = setting(64, "[1, inf)")
    hidden: int = setting(128, "[1, inf)")


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(total NLL in nats / predicted tokens)."""
    return math.exp(nll_sum / tokens) if tokens else math.nan
