"""Shared by the tests of the compute estimate and of its check: ``tiny``, the runs of a small grid
(pinwheel and Fashion-MNIST; vae, beta-vae, lr-vae and il-lid-vae, 2 seeds)."""

from __future__ import annotations

import pytest

from benchmark.planning.grid import load_grid


TINY = """
seeds = [0, 1]
[train]
epochs = 2
batch_size = 32
[model]
arch = "mlp-shallow"
width = 16
latent_dim = 2
[eval]
nll_samples = 0
geometry_points = 50  # within pinwheel's 50 test examples
noise_points = 50
[[datasets]]
name = "pinwheel"
train_size = 100
test_size = 50
[[datasets]]
name = "fashion-mnist"
train = {batch_size = 500}
[[methods]]
name = "vae"
[[methods]]
name = "beta-vae"
beta = [0.1, 0.2]
[[methods]]
name = "lr-vae"
alpha_schedule = ["linear", "constant"]
[[methods]]
name = "il-lid-vae"
hidden_latent = 8
hidden_data = 8
L = [0.0, 1.0]
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    text = TINY
    try:  # the nll_* evaluation settings exist once the richer evaluation lands
        from benchmark.config import EvalConfig

        EvalConfig(nll_samples=0)
    except TypeError:
        text = text.replace("[eval]\nnll_samples = 0\n", "")
    path.write_text(text)
    return load_grid(path).expand()
