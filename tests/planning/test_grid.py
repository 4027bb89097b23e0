"""Grid files (benchmark/planning/grid.py): parsing, validation and expansion into resolved run
configs; the named grids (the paper's among them); and `run --set KEY=VALUE`: grid settings
overridden on the command line, checked as in the grid file, recorded in plan.json, run ids
following the resulting configs, bad keys one-line errors (exit 2) naming the key and the fix."""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

import pytest

from benchmark.config import RunConfig
from benchmark.errors import GridError, UnknownNameError
from benchmark.planning.grid import check_type, grid_names, load_grid, parse_override
from benchmark.discovery import METHODS
from commands import cli

BASE = '''
seeds = [0, 1]
[train]
epochs = 3
batch_size = 50  # a batch within the 100 training examples
[model]
hidden = [32]
latent_dim = 4
[[datasets]]
name = "pinwheel"
train_size = 100
'''


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "g.toml"
    path.write_text(text)
    return path


def test_named_grids_load_and_expand():
    assert {"smoke", "quick"} <= set(grid_names())
    for name in grid_names():
        runs = load_grid(name).expand()
        assert runs and len({r.run_id for r in runs}) == len(runs)


def test_smoke_covers_every_registered_method():
    runs = load_grid("smoke").expand()
    assert {r.method for r in runs} == set(METHODS.names())
    assert all(r.train.epochs <= 2 for r in runs)


def test_sweep_is_a_cartesian_product_in_a_fixed_order(tmp_path):
    grid = load_grid(write(tmp_path, BASE + '[[methods]]\nname = "vae"\n[[methods]]\nname = "beta-vae"\nbeta = [0.5, 2]\n'))
    runs = grid.expand()
    assert [(r.method, r.hyperparameters, r.seed) for r in runs] == [
        ("vae", {}, 0), ("vae", {}, 1),
        ("beta-vae", {"beta": 0.5}, 0), ("beta-vae", {"beta": 0.5}, 1),
        ("beta-vae", {"beta": 2.0}, 0), ("beta-vae", {"beta": 2.0}, 1)]
    assert [r.run_id for r in runs] == [r.run_id for r in grid.expand()]  # deterministic
    run = runs[0]
    assert run.train.epochs == 3 and run.model.options == {"hidden": [32], "activation": "relu"}
    assert run.dataset.train_size == 100 and run.dataset.test_size is None


def test_defaults_are_resolved_and_int_becomes_float(tmp_path):
    runs = load_grid(write(tmp_path, BASE + '[[methods]]\nname = "beta-vae"\n[[methods]]\nname = "beta-vae"\nbeta = 4\n')).expand()
    assert len(runs) == 2  # beta = 4 equals the default 4.0: same config, same run, listed once
    assert runs[0].hyperparameters == {"beta": 4.0}


def test_run_id_is_a_stable_hash_of_the_resolved_config(tmp_path):
    run = load_grid(write(tmp_path, BASE + '[[methods]]\nname = "beta-vae"\nbeta = 0.5\n')).expand()[0]
    again = RunConfig.from_dict(run.to_dict())
    assert again.run_id == run.run_id and len(run.run_id) == 16
    again.hyperparameters["beta"] = 0.25
    assert again.run_id != run.run_id
    again = RunConfig.from_dict(run.to_dict())
    again.train.lr = 1e-4
    assert again.run_id != run.run_id


def test_stream_seeds(tmp_path):
    runs = load_grid(write(tmp_path, BASE + '[[methods]]\nname = "vae"\n[[methods]]\nname = "beta-vae"\n')).expand()
    vae0, vae1, beta0 = runs[0], runs[1], runs[2]
    assert len({vae0.stream_seed(s) for s in ("init", "order", "train", "eval")}) == 4
    assert vae0.stream_seed("init") != beta0.stream_seed("init") != vae1.stream_seed("init")
    # every method of one seed sees the same data subset; another seed sees other data
    assert vae0.stream_seed("data") == beta0.stream_seed("data") != vae1.stream_seed("data")


def test_overrides_per_dataset_and_method(tmp_path):
    text = BASE.replace('train_size = 100', 'train_size = 100\nmodel = {latent_dim = 6}') + \
        '[[methods]]\nname = "vae"\ntrain = {epochs = 7}\nmodel = {hidden = [8, 8]}\n'
    run = load_grid(write(tmp_path, text)).expand()[0]
    assert run.model.latent_dim == 6 and run.model.options["hidden"] == [8, 8] and run.train.epochs == 7


def test_filters_seeds_and_epochs(tmp_path):
    grid = load_grid(write(tmp_path, BASE + '[[datasets]]\nname = "chessboard"\n[[methods]]\nname = "vae"\n[[methods]]\nname = "beta-vae"\n'))
    assert len(grid.expand()) == 8
    runs = grid.expand(methods=["vae"], datasets=["chessboard"], seeds=[5, 6, 7], epochs=1)
    assert [(r.method, r.dataset.name, r.seed, r.train.epochs) for r in runs] == [
        ("vae", "chessboard", s, 1) for s in (5, 6, 7)]
    with pytest.raises(UnknownNameError, match="valid methods: .*beta-vae"):
        grid.expand(methods=["nope"])
    with pytest.raises(UnknownNameError, match="valid datasets: .*pinwheel"):
        grid.expand(datasets=["nope"])


def test_unknown_grid_name_lists_grids():
    with pytest.raises(UnknownNameError, match="valid grids: .*quick.*smoke"):
        load_grid("no-such-grid")


@pytest.mark.parametrize("text, field", [
    (BASE + '[[methods]]\nname = "vae"\nbeta = 2\n', "methods[0].beta"),
    (BASE + '[[methods]]\nname = "beta-vae"\nbeta = "big"\n', "methods[0].beta"),
    (BASE + '[[methods]]\nname = "beta-vae"\ngamma = 1\n', "methods[0].gamma"),
    (BASE + '[[methods]]\nname = "nope"\n', "methods[0].name"),
    (BASE + '[[methods]]\nnam = "vae"\n', "methods[0]"),
    (BASE.replace('"pinwheel"', '"nope"') + '[[methods]]\nname = "vae"\n', "datasets[0].name"),
    (BASE.replace('train_size = 100', 'train_sise = 100') + '[[methods]]\nname = "vae"\n', "datasets[0].train_sise"),
    (BASE.replace('epochs = 3', 'epochs = 3.5') + '[[methods]]\nname = "vae"\n', "train.epochs"),
    (BASE.replace('epochs = 3', 'epoch = 3') + '[[methods]]\nname = "vae"\n', "train.epoch"),
    (BASE.replace('hidden = [32]', 'hidden = 32') + '[[methods]]\nname = "vae"\n', "model.hidden"),
    (BASE.replace('hidden = [32]', 'widths = [32]') + '[[methods]]\nname = "vae"\n', "model.widths"),
    (BASE.replace('latent_dim = 4', 'likelihood = "poisson"') + '[[methods]]\nname = "vae"\n', "model.likelihood"),
    (BASE.replace('seeds = [0, 1]', 'seeds = "0"') + '[[methods]]\nname = "vae"\n', "seeds"),
    (BASE + '[[methods]]\nname = "*"\nbeta = 2\n', "methods[0]"),
    (BASE, "methods"),
    ('colour = "red"\n' + BASE + '[[methods]]\nname = "vae"\n', "colour"),
])
def test_malformed_grid_names_file_and_field(tmp_path, text, field):
    path = write(tmp_path, text)
    with pytest.raises(GridError) as info:
        load_grid(path).expand()
    assert str(path) in str(info.value) and f"`{field}`" in str(info.value)


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "seeds = [0,\n")
    with pytest.raises(GridError, match=f"{path}.*not valid TOML"):
        load_grid(path)


def test_missing_grid_file(tmp_path):
    with pytest.raises(GridError, match="does not exist"):
        load_grid(tmp_path / "absent.toml")


def test_check_type():
    assert check_type(3, float) == 3.0 and isinstance(check_type(3, float), float)
    assert check_type([1, 2], list[int]) == [1, 2]
    assert check_type(None, int | None) is None
    for value, tp in ((True, int), (1.5, int), ("a", float), ([1.5], list[int]), (1, str)):
        with pytest.raises(TypeError):
            check_type(value, tp)


@pytest.mark.parametrize("value, message", [("-1", "outside the valid range [0, inf)"), ("nan", "not a finite number"),
                                            ("inf", "not a finite number")])
def test_hyperparameter_outside_its_declared_range_is_a_grid_error(tmp_path, value, message):
    grid = load_grid(write(tmp_path, BASE + f'[[methods]]\nname = "beta-vae"\nbeta = {value}\n'))
    with pytest.raises(GridError, match=r"field `methods\[0\]\.beta`: beta-vae: .*" + message.replace("[", r"\[").replace(")", r"\)")):
        grid.expand()


def test_a_literal_hyperparameter_outside_its_choices_is_a_grid_error_naming_them(tmp_path):
    grid = load_grid(write(tmp_path, BASE + '[[methods]]\nname = "free-bits"\nhinge = "sample"\n'))
    with pytest.raises(GridError, match=r"field `methods\[0\]\.hinge`: free-bits: 'sample' is not a valid choice; "
                                        r"valid: 'batch', 'example'"):
        grid.expand()


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


# --- run --set KEY=VALUE ------------------------------------------------------------------------

TINY = '''
description = "tiny"
seeds = [0]
headline = [{method = "lr-vae", alpha_T = 1.0}]
[train]
epochs = 1
batch_size = 32
lr = 1e-3
[model]
hidden = [8]
latent_dim = 2
[eval]
nll_samples = 4
nll_examples = 16
geometry_points = 4
noise_points = 4
[[datasets]]
name = "pinwheel"
train_size = 64
test_size = 32
[[datasets]]
name = "chessboard"
train_size = 64
test_size = 32
model = {latent_dim = 1}
[[methods]]
name = "vae"
[[methods]]
name = "lr-vae"
alpha_T = 1.0
'''


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_values_are_toml_or_bare_words():
    assert parse_override("train.lr=3e-4") == ("train.lr", 3e-4)
    assert parse_override("model.latent_dim=16") == ("model.latent_dim", 16)
    assert parse_override("model.hidden=[64, 64]") == ("model.hidden", [64, 64])
    assert parse_override("methods.lr-vae.stop_gradient=true") == ("methods.lr-vae.stop_gradient", True)
    assert parse_override("model.arch=conv") == ("model.arch", "conv")
    assert parse_override('train.optimizer="sgd"') == ("train.optimizer", "sgd")


def test_overrides_change_the_configs_and_run_ids(tiny):
    plain = load_grid(tiny)
    grid = load_grid(tiny, ["train.lr=3e-4", "model.latent_dim=2", "methods.lr-vae.alpha_T=0.4",
                            "datasets.pinwheel.train_size=48"])
    runs = grid.expand()
    assert {r.train.lr for r in runs} == {3e-4}
    # model.KEY holds for every run: it also replaces the data set entry's own latent_dim
    assert {r.model.latent_dim for r in runs} == {2}
    assert {r.hyperparameters["alpha_T"] for r in runs if r.method == "lr-vae"} == {0.4}
    assert {r.dataset.train_size for r in runs if r.dataset.name == "pinwheel"} == {48}
    assert {r.dataset.train_size for r in runs if r.dataset.name == "chessboard"} == {64}
    assert not {r.run_id for r in runs} & {r.run_id for r in plain.expand()}
    # a grid with overrides is another grid: its own results folder, no headline
    assert grid.name.startswith("tiny-set-") and grid.name != load_grid(tiny, ["train.lr=1e-4"]).name
    assert grid.name == load_grid(tiny, ["train.lr=0.0003", "model.latent_dim=2", "methods.lr-vae.alpha_T=0.4",
                                         "datasets.pinwheel.train_size=48"]).name
    assert grid.headline() == () and plain.headline() != ()
    # the same values in the file give the same runs
    edited = tiny.with_name("edited.toml")
    edited.write_text(TINY.replace("lr = 1e-3", "lr = 3e-4").replace("latent_dim = 1", "latent_dim = 2")
                      .replace("alpha_T = 1.0\n", "alpha_T = 0.4\n").replace('headline = [{method = "lr-vae", alpha_T = 1.0}]\n', "")
                      .replace('name = "pinwheel"\ntrain_size = 64', 'name = "pinwheel"\ntrain_size = 48'))
    assert [r.run_id for r in load_grid(edited).expand()] == [r.run_id for r in runs]
    # later overrides of the same key win; a list sweeps as in the file
    assert {r.train.lr for r in load_grid(tiny, ["train.lr=1e-2", "train.lr=2e-3"]).expand()} == {2e-3}
    swept = load_grid(tiny, ["methods.lr-vae.alpha_T=[0.2, 0.4]"]).expand(methods=["lr-vae"])
    assert sorted(r.hyperparameters["alpha_T"] for r in swept) == [0.2, 0.2, 0.4, 0.4]


@pytest.mark.parametrize("given, expected", [
    ("train.lrr=1", "field `train.lrr` (the value of --set train.lrr=1): unknown setting; valid: epochs, batch_size, lr"),
    ("train.lr=-1", "field `train.lr` (the value of --set train.lr=-1): "),
    ("train.lr=fast", "field `train.lr` (the value of --set train.lr=\"fast\"): expected float"),
    ("model.latent_dim=0", "(the value of --set model.latent_dim=0)"),
    ("methods.lr-vae.alpha_T=-1", "field `methods[1].alpha_T` (the value of --set methods.lr-vae.alpha_T=-1): lr-vae: "),
    ("methods.lr-vae.alpha=1", "lr-vae has no hyperparameter 'alpha'; valid: beta, alpha_T"),
    ("methods.beta-vae.beta=1", "--set methods.beta-vae.beta: grid file"),
    ("datasets.mnist.train_size=5", "no [[datasets]] entry named 'mnist' (its entries: chessboard, pinwheel)"),
    ("optimizer=adam", "--set optimizer: no grid setting 'optimizer'; valid keys: train.KEY, model.KEY"),
    ("train=1", "--set train: name a setting inside it, e.g. train.KEY"),
    ("train.lr", "--set 'train.lr': expected KEY=VALUE, e.g. --set train.lr=3e-4"),
    ("model.hidden=[8", "--set model.hidden=[8: the value is no TOML value"),
    ("seeds=-1", "field `seeds` (the value of --set seeds=-1): expected a non-empty list of integers"),
])
def test_bad_overrides_are_one_line_errors(tiny, tmp_path, capsys, given, expected):
    code, out, err = cli(["run", "--grid", str(tiny), "--results", str(tmp_path / "r"), "--dry-run", "--no-estimate",
                          "--set", given], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "r").exists()


def test_overrides_are_recorded_in_the_plan(tiny, tmp_path, capsys):
    results = tmp_path / "results"
    args = ["run", "--grid", str(tiny), "--results", str(results), "--methods", "vae", "--datasets", "pinwheel",
            "--device", "cpu", "--set", "train.lr=3e-4", "--set", "methods.lr-vae.alpha_T=0.4"]
    code, _, err = cli(args, capsys)
    assert code == 0, err
    (folder,) = [p for p in results.iterdir() if p.is_dir()]
    assert folder.name.startswith("tiny-set-") and f"-> {folder}" in err.splitlines()[0]
    plan = json.loads((folder / "plan.json").read_text())
    assert plan["overrides"] == [{"key": "train.lr", "value": 3e-4}, {"key": "methods.lr-vae.alpha_T", "value": 0.4}]
    assert "(with --set train.lr=0.0003 methods.lr-vae.alpha_T=0.4)" in plan["description"]
    assert "headline" not in plan
    planned = {r["run_id"]: r["config"] for r in plan["runs"]}
    assert {c["train"]["lr"] for c in planned.values()} == {3e-4}
    assert {c["hyperparameters"]["alpha_T"] for c in planned.values() if c["method"] == "lr-vae"} == {0.4}
    (record,) = [json.loads(p.read_text()) for p in (folder / "runs").glob("*.json")]
    assert record["run_id"] in planned and record["config"]["train"]["lr"] == 3e-4
    # the same command again finds its runs done; the grid without overrides is apart
    code, _, err = cli(args, capsys)
    assert code == 0 and "1 already done (skipped), 0 to run" in err.splitlines()[0]
    code, _, err = cli(["run", "--grid", str(tiny), "--results", str(results), "--dry-run", "--no-estimate"], capsys)
    assert code == 0 and "0 already done" in err.splitlines()[0] and f"-> {results / 'tiny'}" in err.splitlines()[0]


def test_an_override_error_raised_by_the_grid_names_the_set(tiny):
    with pytest.raises(GridError, match=r"field `train\.epochs` \(the value of --set train\.epochs=0\)"):
        load_grid(tiny, ["train.epochs=0"]).expand()
