"""LID-VAE and IL-LID-VAE (methods/lid_vae.py): IL-LID-VAE's decoder is L-inverse-Lipschitz (L split
over its two maps as asked), its L schedule is applied, logged and saved; LID-VAE guarantees no
bound and needs a latent size at most the data's. (Their decoder at init: tests/ml/test_models.py
and tests/ml/test_icnn.py; on text: tests/ml/test_sequence.py.)"""

import math

import pytest
import torch

from benchmark.config import ModelConfig
from benchmark.ml.method import build_method

from toy_methods import SHAPES, build, progress


@pytest.mark.parametrize("il_split, L_total", [("sqrt", 0.5), ("per-map", 0.25)])
@pytest.mark.parametrize("kind", SHAPES)
def test_il_lid_decoder_is_L_total_inverse_lipschitz(il_split, L_total, kind):
    method = build("il-lid-vae", kind, L=0.5, il_split=il_split, hidden_latent=16, hidden_data=16)
    extras = method.record_extras()
    assert extras["L_total"] == pytest.approx(L_total) and extras["il_split"] == il_split
    assert extras["lam_per_map"] == pytest.approx(math.sqrt(0.5) if il_split == "sqrt" else 0.5)
    decoder = method.model.decoder.double()
    d = SHAPES[kind][1]
    a = torch.randn(256, d, dtype=torch.float64)
    b = a + 10 ** torch.empty(256, 1, dtype=torch.float64).uniform_(-3, 0) * torch.randn_like(a)
    with torch.no_grad():
        ratio = (decoder(a) - decoder(b)).flatten(1).norm(dim=-1) / (a - b).norm(dim=-1)
    assert ratio.min() >= L_total * (1 - 1e-6)


def test_il_lid_L_schedule_is_applied_logged_and_saved():
    method = build("il-lid-vae", L=0.5, L_schedule="decay", L_schedule_options={"start": 2.0},
                   hidden_latent=8, hidden_data=8)
    assert method.record_extras()["L_total"] == pytest.approx(2.0)
    x = torch.rand(8, 2)
    assert method.loss(x, progress(5))["L"] == pytest.approx(1.25)
    assert method.record_extras()["L_total"] == pytest.approx(1.25)
    assert method.loss(x, progress(10))["L"] == pytest.approx(0.5)
    fresh = build("il-lid-vae", L=0.5, L_schedule="decay", L_schedule_options={"start": 2.0},
                  hidden_latent=8, hidden_data=8)
    fresh.load_state_dict(method.state_dict())
    assert fresh.record_extras()["L_total"] == pytest.approx(0.5)


def test_lid_vae_has_no_inverse_lipschitz_guarantee():
    assert build("lid-vae", hidden_latent=8, hidden_data=8).record_extras() == {"lam_per_map": 0.0, "L_total": 0.0}


def test_lid_needs_latent_dim_at_most_data_size():
    with pytest.raises(ValueError, match="latent_dim of at most 2"):
        build_method("lid-vae", {}, ModelConfig(latent_dim=3, options={"hidden": [16]}), (2,))
