"""Nothing mixed, nothing orphaned, nothing lost: grid names are folder names, a results folder
belongs to one grid (claimed under a lock that names its holder), write failures after training
lose nothing and crash nothing, SIGTERM is Ctrl-C, files get the user's umask, a damaged
checkpoint costs no attempt, and contradictory options are errors. Through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main

ROOT = Path(__file__).resolve().parent.parent

TINY = '''
seeds = [0]
[train]
epochs = {epochs}
batch_size = 32
[model]
hidden = [8]
latent_dim = 2
[eval]
nll_samples = 4
nll_examples = 16
geometry_points = 4
noise_points = 4
mi_curve_every = 0
[[datasets]]
name = "pinwheel"
train_size = {train_size}
test_size = 32
[[methods]]
name = "{method}"
'''


def tiny(folder: Path, name: str = "tiny", epochs: int = 1, train_size: int = 64, method: str = "vae") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(TINY.format(epochs=epochs, train_size=train_size, method=method))
    return path


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    return lines[-1]


def run_args(grid: Path, results: Path, *extra: str) -> list[str]:
    return ["run", "--grid", str(grid), "--results", str(results), "--device", "cpu", *extra]


def records(results: Path, grid: str = "tiny") -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / grid / "runs").glob("*.json"))}


# --- 1. grid names are folder names -----------------------------------------------------------

@pytest.mark.parametrize("stem, problem", [(".", "'.' or '..'"), ("..", "'.' or '..'"), ("a\tb", "control character"),
                                           ("a\\b", "path separator")])
def test_grid_names_that_are_no_folder_name_exit_2_and_write_nothing(tmp_path, capsys, stem, problem):
    grid = tiny(tmp_path / "grids", name=stem)
    results = tmp_path / "results"
    code, _, err = cli(run_args(grid, results), capsys)
    line = one_error_line(err)
    assert code == 2 and problem in line and "rename the grid file" in line
    assert not results.exists()
    code, _, err = cli(["report", "--grid", stem, "--results", str(results), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and problem in one_error_line(err) and not (tmp_path / "out").exists()


def test_an_empty_grid_name_exit_2(capsys):
    code, _, err = cli(["run", "--grid", "", "--dry-run", "--no-estimate"], capsys)
    assert code == 2 and "is empty" in one_error_line(err)


# --- 6. contradictory options, bounded counts --------------------------------------------------------

@pytest.mark.parametrize("extra, named", [
    (["--force", "--keep-stale"], "--keep-stale"),
    (["--address", "head:6379"], "--address"),
    (["--runs-per-gpu", "2", "--device", "cpu"], "--runs-per-gpu"),
    (["--executor", "ray", "--threads", "2"], "--threads"),
    (["--workers", "100000"], "--workers"),
    (["--threads", "5000"], "--threads"),
    (["--retries", "-1"], "--retries"),
    (["--retries", "1000"], "--retries"),
    (["--checkpoint-every", "-3"], "--checkpoint-every"),
    (["--epochs", "10000000"], "--epochs"),
    (["--seeds", "3000000000"], "--seeds"),
    (["--seeds", "0-10000"], "--seeds"),
    (["--pack", "100000"], "--pack"),
])
def test_impossible_options_exit_2_with_one_line(capsys, extra, named):
    code, _, err = cli(["run", "--grid", "smoke", "--methods", "vae", "--datasets", "pinwheel", "--dry-run",
                        "--no-estimate", *extra], capsys)
    assert code == 2 and named in one_error_line(err)
