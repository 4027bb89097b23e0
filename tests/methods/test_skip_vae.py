"""Skip-VAE (methods/skip_vae.py): z reaches the output through every layer's skip path, on every
architecture. (On an LSTM decoder: tests/ml/test_sequence.py.)"""

from __future__ import annotations

import pytest
import torch

from benchmark.config import ModelConfig
from benchmark.errors import GridError
from benchmark.ml.method import build_method

from image_methods import build


SKIP_MODELS = [
    ("mlp", {"hidden": [16, 16]}, (1, 8, 8)),
    ("mlp-shallow", {"width": 16}, (1, 8, 8)),
    ("mlp-deep", {"width": 16, "depth": 3}, (1, 8, 8)),
    ("conv", {"channels": [4, 8], "hidden": 16}, (1, 8, 8)),
    ("conv28", {"channels": [4, 8], "hidden": 16}, (1, 28, 28)),
    ("conv64", {"channels": [4, 4, 8, 8], "hidden": 16}, (3, 64, 64)),
]


def isolated_jacobian_norm(decoder, keep: str | None, z: torch.Tensor) -> float:
    """||J v|| of ``decoder`` at z when z may only enter through skip ``keep`` (None: through no
    skip): the first layer's weight and every other skip map are zeroed, on a copy."""
    import copy

    decoder = copy.deepcopy(decoder).double()
    first = next(m for m in decoder.modules() if isinstance(m, (torch.nn.Linear, torch.nn.ConvTranspose2d)))
    with torch.no_grad():
        first.weight.zero_()
        for name, skip in getattr(decoder, "skips", {}).items():
            if name != keep:
                skip.weight.zero_()
    v = torch.randn_like(z)
    _, jv = torch.autograd.functional.jvp(decoder, z, v)
    return float(jv.norm())


@pytest.mark.parametrize("arch, options, shape", SKIP_MODELS)
def test_skip_decoder_feeds_z_into_every_layer(arch, options, shape):
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, latent_dim=3, options=options)
    decoder = build_method("skip-vae", {}, config, shape).model.decoder
    affine = [m for m in decoder.layers if isinstance(m, (torch.nn.Linear, torch.nn.ConvTranspose2d))]
    assert len(decoder.skips) == len(affine) - 1  # every layer after the first one
    z = torch.randn(2, 3, dtype=torch.float64)
    assert decoder.double()(z).shape == (2, *shape)
    for name in decoder.skips:
        assert isolated_jacobian_norm(decoder, name, z) > 1e-6, name
    assert isolated_jacobian_norm(decoder, None, z) == 0.0
    torch.manual_seed(0)
    plain = build_method("vae", {}, config, shape).model.decoder
    assert isolated_jacobian_norm(plain, None, z) == 0.0  # without skips, z has no other way in


def test_skip_output_false_leaves_the_output_layer_alone():
    method = build("skip-vae", hidden=(16, 16), skip_output=False)
    affine = [i for i, m in enumerate(method.model.decoder.layers) if isinstance(m, torch.nn.Linear)]
    assert sorted(int(k) for k in method.model.decoder.skips) == affine[1:-1]


@pytest.mark.parametrize("hidden, options, message", [
    ((), {}, "an mlp without hidden layers has no layer"),
    ((16,), {"skip_output": False}, "set skip_output = true"),
])
def test_skip_vae_refuses_a_decoder_without_layers_to_skip_into(hidden, options, message):
    with pytest.raises(GridError, match=message):
        build("skip-vae", hidden=hidden, **options)
