"""Packed training: runs that differ only in their seed trained as one stacked model.

A packed run keeps its own initialisation, batch order, optimiser state, gradient clipping and
loss; only the stream of sampling noise is shared by the pack. So with the noise switched off
(the reparameterised sample replaced by its mean) a packed run must match the same run trained
alone to float tolerance, and with it on, the same grid packed and unpacked must agree within
the noise. A run that diverges must leave the others' numbers untouched.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from benchmark.cli import main
from benchmark.config import TrainConfig
from benchmark.ml.method import TrainingProgress, build_method
from benchmark.ml.pack import PackRefused, StackedMethods, pack_problem
from benchmark.ml.train import Trainer
from benchmark.discovery import METHODS
from benchmark.tools.check_method import MODEL, NOISE, SHAPE, pack_mismatches, pixels

from fakes import OWN_STEP_PLUGIN

LID = {"hidden_latent": 16, "hidden_data": 16}
BUILT_IN_PACKABLE = ["vae", "beta-vae", "lr-vae", "lid-vae", "il-lid-vae", "kl-annealing", "cyclical", "free-bits",
                     "delta-vae", "bn-vae", "aggressive", "info-vae", "skip-vae"]
# Smaller than the defaults (ICNN widths) or settings the defaults leave off (lr-vae's z source)
SMALL = {"lid-vae": LID, "il-lid-vae": {**LID, "L": 0.5}, "lr-vae": {"z_source": "posterior-mean", "alpha_T": 2.0}}


def build(name: str, hp: dict, seed: int):
    torch.manual_seed(seed)
    return build_method(name, hp, MODEL, SHAPE)


def train_packed(name, hps, seeds, config, epochs):
    hps = hps if isinstance(hps, list) else [hps] * len(seeds)
    methods = [build(name, hp, s) for hp, s in zip(hps, seeds)]
    trainer = Trainer(methods, [pixels(50, s) for s in seeds], config,
                      [torch.Generator().manual_seed(s) for s in seeds],
                      noise=[torch.Generator().manual_seed(NOISE + s) for s in seeds])
    return methods, trainer, [trainer.run_epoch() for _ in range(epochs)]


def packable_methods() -> list[str]:
    """Every registered method that packs on an MLP (plugins on $BENCHMARK_PLUGINS included)."""
    return [name for name in sorted(METHODS) if pack_problem(METHODS[name], MODEL) is None]


@pytest.mark.parametrize("name", packable_methods())
def test_a_packed_run_matches_the_run_trained_alone(name):
    # Each packed run gets the noise it draws alone (its own generator, seeded as it seeds the
    # global RNG alone), so only float rounding (batched against plain matrix products) differs.
    assert pack_mismatches(name, SMALL.get(name, {})) == []


def test_lr_vae_with_the_kl_adaptive_schedule_packs_each_run_on_its_own_last_kl():
    # the schedule reads each run's last KL on the device (no float() that vmap would refuse)
    assert pack_mismatches("lr-vae", {**SMALL["lr-vae"], "alpha_schedule": "kl-adaptive"}) == []


def test_the_packed_check_covers_every_built_in_packable_method():
    assert set(packable_methods()) >= set(BUILT_IN_PACKABLE)


SHARED_STATE = '''
from dataclasses import dataclass
from benchmark.plugin import Method, register_method, setting


@dataclass
class Config:
    beta: float = setting(1.0, doc="weight of the KL term")


@register_method
class Cached(Method):
    """rec + beta * KL, with beta read once in __init__: a pack would train every run at one beta."""

    name = "cached-beta"
    packable = True
    pack_scalars = ("beta",)
    Config = Config

    def __init__(self, config, model_config):
        super().__init__(config, model_config)
        self.weight = float(config.beta)

    def loss(self, x, progress):
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {"loss": rec + self.weight * kl, "rec": rec, "kl": kl}
'''


def test_check_method_names_a_plugin_whose_runs_share_state_in_a_pack(plugin_dir, capsys):
    plugin_dir({"cached.py": SHARED_STATE})
    assert "cached-beta" in packable_methods()  # so the parametrised test above would run it too
    assert main(["check-method", "cached-beta"]) == 1
    err = capsys.readouterr().err
    assert "cached-beta breaks the packing promise" in err and "the pack was refused" in err
    assert "run 1's method differs from run 0's in self.weight (0.5 vs 1.5)" in err
    assert main(["check-method", "vae"]) == 0 and "match the same runs trained alone" in capsys.readouterr().out
    plugin_dir({"own.py": OWN_STEP_PLUGIN})
    assert main(["check-method", "own-step"]) == 0 and "does not pack" in capsys.readouterr().out
    assert main(["check-method", "beta-vae", "--hp", "gamma=1"]) == 2
    assert "--hp for beta-vae" in capsys.readouterr().err


READS_A_FLOAT = SHARED_STATE.replace('name = "cached-beta"', 'name = "reads-float"').replace(
    "self.weight = float(config.beta)", "self.weight = 1.0").replace("rec + self.weight * kl", "rec + float(kl) * kl")


def test_check_method_names_a_packed_step_that_fails(plugin_dir, capsys):
    # float(kl) of a batched tensor: vmap refuses it (the runner reruns such a pack's runs alone)
    plugin_dir({"reads_float.py": READS_A_FLOAT})
    assert main(["check-method", "reads-float", "--hp", "beta=1"]) == 1
    err = capsys.readouterr().err
    assert "reads-float breaks the packing promise" in err and "the packed step failed: vmap:" in err


def test_runs_that_differ_in_more_than_seed_and_pack_scalars_are_refused():
    with pytest.raises(ValueError, match="differ only in their seed and beta, alpha_T"):
        StackedMethods([build("lr-vae", {"num_samples": n}, 0) for n in (1, 2)], [torch.Generator()] * 2)


def test_a_schedule_built_from_a_pack_scalar_gets_each_runs_target():
    # lr-vae's alpha schedule is built in __init__ from alpha_T: the pack hands each run its own
    # target (the loss reports each run's alpha), and a schedule that differs in more than its
    # target (here its duration) keeps the runs apart.
    methods = [build("lr-vae", {"alpha_T": a, "alpha_schedule": "constant"}, s) for s, a in enumerate((0.4, 1.0, 2.5))]
    stack = StackedMethods(methods, [torch.Generator().manual_seed(s) for s in range(3)])
    assert stack.schedules == {"alpha_schedule": "alpha_T"}
    parts = stack.loss(torch.rand(3, 4, *SHAPE), TrainingProgress(0, 0, 10))
    assert parts["alpha"].tolist() == pytest.approx([0.4, 1.0, 2.5])
    apart = [build("lr-vae", {"alpha_T": a}, 0) for a in (0.4, 1.0)]
    apart[1].alpha_schedule = dataclasses.replace(apart[1].alpha_schedule, duration=0.5)
    with pytest.raises(PackRefused, match=r"run 1's method differs from run 0's in self\.alpha_schedule"):
        StackedMethods(apart, [torch.Generator()] * 2)


def test_a_diverging_run_is_masked_and_the_others_go_on_unchanged():
    config = TrainConfig(epochs=3, batch_size=16)
    seeds = [0, 1, 2]
    _, _, clean = train_packed("vae", {}, seeds, config, 3)
    _, trainer, first = train_packed("vae", {}, seeds, config, 1)
    with torch.no_grad():
        next(iter(trainer.step.stack.params.values()))[1].fill_(float("nan"))
    later = [trainer.run_epoch() for _ in range(2)]
    assert first[0] == clean[0]
    assert later[0][1] is None and later[1][1] is None and set(trainer.diverged) == {1}
    assert trainer.diverged[1].epoch == 1
    for k in (0, 2):
        assert later[0][k] == clean[1][k] and later[1][k] == clean[2][k]


def test_a_pack_resumes_from_its_state_with_the_numbers_of_an_uninterrupted_pack():
    config = TrainConfig(epochs=2, batch_size=16, lr_schedule="cosine")
    seeds = [3, 4]
    _, _, straight = train_packed("lr-vae", {}, seeds, config, 2)
    _, first, _ = train_packed("lr-vae", {}, seeds, config, 1)
    state, rng = first.state_dict(), torch.get_rng_state()
    methods = [build("lr-vae", {}, s) for s in (30, 40)]  # other weights: all must come from the state
    second = Trainer(methods, [pixels(50, s) for s in seeds], config, [torch.Generator() for _ in seeds])
    second.load_state_dict(state)
    torch.set_rng_state(rng)
    assert second.run_epoch() == straight[1]


def test_every_built_in_method_packs_and_a_method_with_its_own_step_only_with_its_pack_step(plugin_dir):
    for name in BUILT_IN_PACKABLE:
        assert pack_problem(METHODS[name]) is None, name
    plugin_dir({"own.py": OWN_STEP_PLUGIN})
    assert pack_problem(METHODS["own-step"]) == ("own-step overrides training_step without a pack_training_step: "
                                                  "its step is its own")
    with pytest.raises(ValueError, match="cannot pack: own-step overrides training_step"):
        StackedMethods([build("own-step", {}, 0) for _ in range(2)], [torch.Generator()] * 2)


def grid_file(tmp_path, method: str = 'name = "vae"', seeds: str = "[0, 1, 2, 3]") -> str:
    path = tmp_path / "packgrid.toml"
    path.write_text(f'''
seeds = {seeds}
[train]
epochs = 2
batch_size = 64
[model]
arch = "mlp-shallow"
width = 128
latent_dim = 8
[eval]
nll_samples = 8
nll_examples = 64
[[datasets]]
name = "fashion-mnist"
train_size = 4000
test_size = 500
[[methods]]
{method}
''')
    return str(path)


def run(grid: str, results, *extra: str) -> int:
    """``run`` on the system's Fashion-MNIST (a learnable data set: on random pixels the KL is noise)."""
    return main(["run", "--grid", grid, "--results", str(results), "--device", "cpu", "--threads", "1", *extra])


def records(results):
    return {r["run_id"]: r for r in (json.loads(p.read_text()) for p in (results / "packgrid" / "runs").glob("*.json"))}


@pytest.mark.parametrize("method, tolerance", [('name = "vae"', 1e-3), ('name = "aggressive"\nblock = 3\nmax_inner_steps = 3', 1e-2)])
def test_a_grid_packed_and_unpacked_gives_the_same_runs_and_numbers_within_the_noise(tmp_path, method, tolerance):
    # aggressive: each run on its own held-out split (drawn from its seed: one copy of the data per
    # run), its own inner steps and its own held-out MI (drawn from its noise stream). It takes
    # about 10x the optimiser steps of the vae per epoch here, which amplify the rounding of
    # batched products more (a step's loss: 7e-8 apart at the first step, 1e-6 after 200, 1e-3
    # after 600); on the tiny model of check-method its packed runs match to the last digit.
    out = {}
    for pack in ("1", "4"):
        results = tmp_path / f"r{pack}"
        assert run(grid_file(tmp_path, method), results, "--pack", pack) == 0
        out[pack] = records(results)
    assert set(out["1"]) == set(out["4"]) and len(out["1"]) == 4
    for run_id, alone in out["1"].items():
        packed = out["4"][run_id]
        assert packed["status"] == alone["status"] == "ok"
        assert "pack" not in alone and packed["pack"]["size"] == 4 and run_id in packed["pack"]["run_ids"]
        for key in ("rec", "kl"):  # the same noise, init and batches: only float rounding differs
            a, b = alone["curves"][-1][key], packed["curves"][-1][key]
            assert abs(a - b) <= tolerance * abs(a), (run_id, key, a, b)  # the issue asked for 1%
        for key in ("rec", "kl", "mi", "nll"):
            assert packed["metrics"][key] == pytest.approx(alone["metrics"][key], rel=tolerance), (run_id, key)
        assert abs(alone["metrics"]["au_count"] - packed["metrics"]["au_count"]) <= 1
        if "aggressive" in method:
            extras = alone["method_extras"], packed["method_extras"]
            for key in ("inner_steps_per_epoch", "aggressive_stopped_after_epoch"):
                assert extras[0][key] == extras[1][key], (run_id, key)
            assert extras[1]["held_out_mi_checks"] == pytest.approx(extras[0]["held_out_mi_checks"], rel=tolerance)


def test_a_pack_that_cannot_run_packed_is_rerun_one_run_at_a_time(tmp_path, capsys):
    # lr-vae's scaled encoder gradient is a custom autograd.Function without a vmap rule
    grid = grid_file(tmp_path, 'name = "lr-vae"\nencoder_grad_scale = 0.5', "[0, 1]")
    results = tmp_path / "r"
    assert run(grid, results, "--pack", "2", "--retries", "0") == 0
    assert "failed in a pack of 2, rerunning each alone" in capsys.readouterr().err
    found = records(results)
    assert len(found) == 2 and all(r["status"] == "ok" and r["attempt"] == 1 and "pack" not in r for r in found.values())


def test_list_methods_says_which_methods_pack(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "run --pack: packs (runs differing in seed or beta; on an LSTM they run alone" in out
    assert "run --pack: packs (runs differing in seed, beta or alpha_T;" in out  # lr-vae
    assert "run --pack: packs (runs differing in seed; on an LSTM they run alone" in out  # aggressive, info-vae...


def test_runs_on_data_sets_of_one_shape_and_size_share_a_pack_each_on_its_own_data(tmp_path):
    grid = tmp_path / "shapes.toml"
    grid.write_text('''
seeds = [0, 1]
[train]
epochs = 2
batch_size = 64
[model]
latent_dim = 2
hidden = [16]
[eval]
nll_samples = 8
nll_examples = 64
[[datasets]]
name = "pinwheel"
train_size = 1000
test_size = 200
[[datasets]]
name = "chessboard"
train_size = 1000
test_size = 200
[[datasets]]
name = "gaussian-mixture"
train_size = 500
test_size = 200
[[methods]]
name = "vae"
''')
    from benchmark.execution.executor import make_packs
    from benchmark.planning.grid import load_grid

    packs = make_packs([r.config for r in load_grid(str(grid)).runs()], 8)
    assert sorted(sorted({c.dataset.name for c in p}) for p in packs) == [["chessboard", "pinwheel"], ["gaussian-mixture"]]
    out = {}
    for pack in ("1", "8"):
        assert main(["run", "--grid", str(grid), "--results", str(tmp_path / pack), "--device", "cpu", "--threads", "1",
                     "--pack", pack]) == 0
        out[pack] = {r["run_id"]: r for r in (json.loads(p.read_text())
                                               for p in (tmp_path / pack / "shapes" / "runs").glob("*.json"))}
    assert set(out["1"]) == set(out["8"]) and len(out["1"]) == 6
    for run_id, alone in out["1"].items():
        packed = out["8"][run_id]
        assert packed["status"] == alone["status"] == "ok"
        assert packed["pack"]["size"] == (4 if packed["config"]["dataset"]["name"] != "gaussian-mixture" else 2)
        assert packed["data"] == alone["data"]  # its own data set's provenance
        for key in ("rec", "kl", "mi", "nll"):
            assert packed["metrics"][key] == pytest.approx(alone["metrics"][key], rel=1e-3, abs=1e-6), (run_id, key)


def test_a_run_sitting_a_step_out_keeps_its_buffers_and_noise_stream():
    from benchmark.ml.optimizers import RunwiseOptimizer
    from benchmark.ml.pack_step import PackTools
    from benchmark.ml.run_data import RunData

    methods = [build("bn-vae", {}, s) for s in (0, 1)]  # batch norm: running statistics in buffers
    noise = [torch.Generator().manual_seed(NOISE + s) for s in (0, 1)]
    stack = StackedMethods(methods, noise)
    x = torch.stack([pixels(16, s).float() / 255 for s in (0, 1)])
    config = TrainConfig(batch_size=16)
    tools = PackTools(stack, RunwiseOptimizer(stack.parameters(), config), config,
                      RunData([pixels(40, s) for s in (0, 1)]), [torch.Generator().manual_seed(s) for s in (0, 1)])
    progress = TrainingProgress(0, 0, 10)
    tools.loss(x, progress)  # the first step records the noise tape (and draws for both)
    buffers = {name: b.clone() for name, b in stack.buffers.items()}
    streams = [g.get_state() for g in noise]
    parts = tools.loss(x, progress, active=[True, False])
    assert parts["loss"].shape == (2,)
    assert any(not torch.equal(b[0], buffers[name][0]) for name, b in stack.buffers.items())  # run 0 moved on
    assert all(torch.equal(b[1], buffers[name][1]) for name, b in stack.buffers.items())  # run 1 as it was
    assert not torch.equal(noise[0].get_state(), streams[0]) and torch.equal(noise[1].get_state(), streams[1])
    orders = [g.get_state() for g in tools.orders]
    batches = tools.fresh_batches([False, True])
    assert batches.shape == (2, 16, *SHAPE) and torch.equal(tools.orders[0].get_state(), orders[0])
    assert not torch.equal(tools.orders[1].get_state(), orders[1])
