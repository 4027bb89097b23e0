"""Methods built small for the tests: on 2-D points (``"toy"``) or 28x28 images (``"image"``), an MLP
with one hidden layer of 16 units."""

import pytest
import torch

from benchmark.config import ModelConfig
from benchmark.ml.method import TrainingProgress, build_method, model_problem


SHAPES = {"toy": ((2,), 2), "image": ((1, 28, 28), 4)}  # shape, latent_dim (LID needs d <= D)


def build(name: str, kind: str = "toy", seed: int = 0, **hyperparameters):
    shape, latent_dim = SHAPES[kind]
    torch.manual_seed(seed)
    config = ModelConfig(latent_dim=latent_dim, options={"hidden": [16]})
    if model_problem(name, hyperparameters, config) is not None:
        pytest.skip(f"{name} does not apply to an MLP (text only; tests/ml/test_sequence.py)")
    return build_method(name, hyperparameters, config, shape)


def progress(step: int, total: int = 11) -> TrainingProgress:
    return TrainingProgress(epoch=0, step=step, total_steps=total)
