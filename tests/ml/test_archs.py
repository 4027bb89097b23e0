"""The architectures (benchmark/ml/archs.py) and their presets mlp-shallow, mlp-deep, conv28 and conv64
(the paper grids that use them: tests/planning/test_grid.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.config import ModelConfig
from benchmark.ml.method import build_method
from benchmark.ml.archs import ARCHS, build_arch
from benchmark.ml.models import ConvArch, MLPArch

MNIST, FACES = (1, 28, 28), (3, 64, 64)


def shapes_of(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(p.shape)) for name, p in module.state_dict().items()]


@pytest.mark.parametrize(
    "arch, options, shape, latent",
    [
        ("mlp-shallow", {}, MNIST, 32),
        ("mlp-shallow", {"width": 64}, (2,), 2),
        ("mlp-deep", {}, MNIST, 32),
        ("mlp-deep", {"width": 32, "depth": 3}, FACES, 64),
        ("conv28", {}, MNIST, 32),
        ("conv64", {}, FACES, 64),
        ("conv64", {"channels": [8, 16]}, MNIST, 32),
        ("mlp", {}, MNIST, 32),
        ("conv", {}, FACES, 64),
    ],
)
def test_presets_build_with_the_right_output_shapes(arch, options, shape, latent):
    encoder, decoder = build_arch(ModelConfig(arch=arch, latent_dim=latent, options=options), shape)
    x = torch.rand(5, *shape)
    mu, raw_logvar = encoder(x)
    assert mu.shape == raw_logvar.shape == (5, latent)
    assert decoder(mu).shape == (5, *shape)


def test_mlp_presets_are_the_mlp_with_fixed_depth():
    def layers(arch: str, **options) -> list[tuple[str, tuple[int, ...]]]:
        encoder, decoder = build_arch(ModelConfig(arch=arch, options=options), MNIST)
        return shapes_of(encoder) + shapes_of(decoder)

    assert layers("mlp-shallow") == layers("mlp", hidden=[512])
    assert layers("mlp-shallow", width=100) == layers("mlp", hidden=[100])
    assert layers("mlp-deep") == layers("mlp", hidden=[512] * 4)
    assert layers("mlp-deep", width=64, depth=1) == layers("mlp-shallow", width=64)
    hidden = [m for m in build_arch(ModelConfig(arch="mlp-deep", options={"depth": 6}), MNIST)[0].modules()
              if isinstance(m, torch.nn.Linear)]
    assert len(hidden) == 7  # 6 hidden layers + the Gaussian head


def test_conv_presets_spell_out_the_conv_defaults():
    for preset, shape in (("conv28", MNIST), ("conv64", FACES)):
        a = build_arch(ModelConfig(arch=preset, latent_dim=16), shape)
        b = build_arch(ModelConfig(arch="conv", latent_dim=16), shape)
        assert [shapes_of(m) for m in a] == [shapes_of(m) for m in b]


def test_existing_presets_unchanged():
    assert ARCHS["mlp"] is MLPArch and ARCHS["conv"] is ConvArch
    assert dataclasses.asdict(MLPArch()) == {"hidden": [512, 512], "activation": "relu"}
    assert dataclasses.asdict(ConvArch()) == {"channels": [], "activation": "relu", "hidden": 256}


@pytest.mark.parametrize(
    "arch, options, shape, message",
    [
        ("mlp-deep", {"depth": 0}, MNIST, "mlp-deep: depth must be >= 1"),
        ("mlp-shallow", {"width": 0}, MNIST, "mlp-shallow: width must be >= 1"),
        ("mlp-shallow", {"activation": "gelu?"}, MNIST, "activation 'gelu\\?'"),
        ("conv64", {}, MNIST, "side 28 is not divisible by 2\\^4"),
        ("conv28", {}, (784,), "conv needs square images"),
    ],
)
def test_preset_errors(arch, options, shape, message):
    with pytest.raises(ValueError, match=message):
        build_arch(ModelConfig(arch=arch, options=options), shape)


def test_lid_decoder_replaces_only_the_decoder_of_a_preset():
    config = ModelConfig(arch="conv64", latent_dim=8)
    method = build_method("lid-vae", {"hidden_latent": 8, "hidden_data": 8}, config, FACES)
    reference, _ = build_arch(config, FACES)
    assert shapes_of(method.model.encoder) == shapes_of(reference)
    out = method.model(torch.rand(2, *FACES))
    assert out.params.shape == (2, *FACES) and out.mu.shape == (2, 8)
