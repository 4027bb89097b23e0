"""Methods built small for the tests of text VAEs: a tiny LSTM (``lstm-small``: embeddings of 8, 16
hidden units, 4 latent dimensions) on random sentences of at most 9 tokens over 24 words."""

from __future__ import annotations

import torch

from benchmark.config import ModelConfig
from benchmark.data.vocabulary import BOS_ID, EOS_ID, PAD_ID, SequenceShape
from benchmark.ml.method import TrainingProgress, build_method


SHAPE = SequenceShape(max_length=9, vocab_size=24)
MODEL = ModelConfig(arch="lstm-small", latent_dim=4, likelihood="categorical",
                    options={"embed": 8, "hidden": 16, "dropout_in": 0.0, "dropout_out": 0.0, "z_input": True,
                             "z_init": True, "max_length": 0})


def sentences(n: int = 12, seed: int = 0) -> torch.Tensor:
    """Random sentences of 1-7 words: ids [n, 9] <s> w.. </s> <pad>..."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n, SHAPE.max_length), PAD_ID, dtype=torch.long)
    for i in range(n):
        words = int(torch.randint(1, SHAPE.max_length - 1, (), generator=g))
        x[i, 0] = BOS_ID
        x[i, 1:words + 1] = torch.randint(4, SHAPE.vocab_size, (words,), generator=g)
        x[i, words + 1] = EOS_ID
    return x


def build(name: str, seed: int = 0, **hyperparameters):
    torch.manual_seed(seed)
    return build_method(name, hyperparameters, MODEL, SHAPE)


def progress(step: int = 0, total: int = 10) -> TrainingProgress:
    return TrainingProgress(epoch=0, step=step, total_steps=total)
