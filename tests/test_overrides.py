"""`run --set KEY=VALUE`: grid settings overridden on the command line, checked as in the grid
file, recorded in plan.json, run ids following the resulting configs; bad keys are one-line
errors (exit 2) naming the key and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import GridError
from benchmark.planning.grid import load_grid, parse_override

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


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


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
