"""Architecture presets (mlp-shallow, mlp-deep, conv28, conv64) and the paper grids that use them."""

from __future__ import annotations

import collections
import dataclasses

import pytest
import torch

from benchmark.discovery import METHODS
from benchmark.planning.grid import load_grid
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


# --- the paper grids -------------------------------------------------------------------------

ALL_SETS = {"mnist", "fashion-mnist", "omniglot", "celeba", "ffhq"}
ALL_METHODS = {"vae", "beta-vae", "lr-vae", "lid-vae", "il-lid-vae"}
REMEDIES = {"kl-annealing", "cyclical", "free-bits", "delta-vae", "bn-vae", "aggressive", "info-vae", "skip-vae"}


def settings(runs, method: str, key: str) -> set:
    return {r.hyperparameters[key] for r in runs if r.method == method}


def test_full_grid():
    runs = load_grid("full").expand()
    assert len(runs) == 920 and len({r.run_id for r in runs}) == 920
    per_pair = collections.Counter((r.dataset.name, r.method) for r in runs)
    assert {d for d, _ in per_pair} == ALL_SETS and {m for _, m in per_pair} == ALL_METHODS | REMEDIES
    assert len([r for r in runs if r.method in ALL_METHODS]) == 600  # the paper's comparison
    for name in REMEDIES:  # every remedy at its defaults, 5 seeds, on all 8 data set entries
        mine = [r for r in runs if r.method == name]
        assert len(mine) == 40 and all(r.hyperparameters == dataclasses.asdict(METHODS[name].Config()) for r in mine)
    assert {r.seed for r in runs} == {0, 1, 2, 3, 4}
    assert settings(runs, "beta-vae", "beta") == {0.1, 0.2} and all(r.hyperparameters == {} for r in runs if r.method == "vae")
    assert settings(runs, "lr-vae", "beta") == {0.1, 0.2, 1.0}
    assert settings(runs, "lr-vae", "alpha_T") == {0.4, 1.0}
    assert settings(runs, "il-lid-vae", "L") == {0.1, 0.3, 0.5, 1.0, 2.0}
    for run in runs:
        faces = run.dataset.name in ("celeba", "ffhq")
        assert run.dataset.train_size is None and run.dataset.test_size is None
        assert run.model.latent_dim == (64 if faces else 32)
        assert run.model.arch in ({"conv64"} if faces else {"mlp-shallow", "mlp-deep"})
        assert run.train.batch_size == 128
        steps = run.train.epochs * -(-DATA_SIZES[run.dataset.name] // run.train.batch_size)
        assert 22_000 <= steps <= 26_000, (run.dataset.name, steps)
    archs = {(r.dataset.name, r.model.arch) for r in runs}
    assert {("mnist", "mlp-shallow"), ("mnist", "mlp-deep"), ("omniglot", "mlp-deep")} <= archs


DATA_SIZES = {"mnist": 60_000, "fashion-mnist": 60_000, "omniglot": 19_280, "celeba": 162_770, "ffhq": 60_000}


def test_warmup_and_capacity_sub_grids():
    warmup = load_grid("full-warmup").expand()
    assert {r.method for r in warmup} == {"lr-vae"} and {r.dataset.name for r in warmup} == ALL_SETS
    assert settings(warmup, "lr-vae", "alpha_schedule") == {"linear", "constant"}
    assert len(warmup) == 5 * 2 * 2 * 3 * 5
    capacity = load_grid("full-capacity").expand()
    archs = {(r.model.options["width"], r.model.options["depth"]) for r in capacity}
    assert {(w, 1) for w in (128, 256, 512, 1024, 2048)} | {(512, d) for d in (2, 4, 8)} == archs
    assert {r.method for r in capacity} == {"vae", "lr-vae"} and len(capacity) == 160
