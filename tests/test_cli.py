"""End to end: the `smoke` grid through the command line, skip-on-rerun, and every bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.discovery import METHODS
from conftest import DEVICES, smoke_runs

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def smoke(results: Path, data_root: Path, *extra: str, device: str = "cpu") -> list[str]:
    return ["run", "--grid", "smoke", "--results", str(results), "--data-root", str(data_root), "--device", device, *extra]


def records(results: Path, grid: str = "smoke") -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / grid / "runs").glob("*.json"))}


@pytest.mark.parametrize("device", DEVICES)
def test_smoke_grid_end_to_end(tmp_path, fake_fashion_root, capsys, device):
    results = tmp_path / "results"
    code, out, err = run(smoke(results, fake_fashion_root, device=device), capsys)
    assert code == 0, err
    recs = records(results)
    expected = smoke_runs()  # fashion-mnist, pinwheel and ptb x every method that applies
    assert len(recs) == expected and all(r["status"] == "ok" for r in recs.values()), err
    assert all(r["device"].startswith(device) for r in recs.values())
    record = next(iter(recs.values()))
    for key in ("config", "run_id", "status", "metrics", "vectors", "estimators", "curves", "wall_time_s",
                "device", "environment", "seeds", "grid"):
        assert key in record
    assert record["environment"]["packages"]["torch"] and "commit" in record["environment"]["git"]
    assert set(record["metrics"]) >= {"au", "au_count", "kl", "mi", "rec", "neg_elbo", "mse", "nll", "kl_q50",
                                      "geo_bilipschitz", "geo_sv_min_median"}
    assert record["estimators"]["nll_samples"] == 20 and set(record["per_class"]) == {"au", "kl"}
    images = [r for r in recs.values() if r["config"]["dataset"]["name"] == "fashion-mnist"]
    assert all(set(r["artifacts"]) == {"noise", "reconstructions", "samples", "traversals", "interpolations"}
               for r in images)
    assert all(len(r["estimators"]["latent_images"]["traversal_dims"]) == min(8, r["config"]["model"]["latent_dim"])
               for r in images)
    assert all((results / "smoke" / "runs" / name).stat().st_size > 0 for r in images for name in r["artifacts"].values())
    assert all(r["artifacts"] == {} for r in recs.values() if r["config"]["dataset"]["name"] == "pinwheel")
    assert len(record["curves"]) == record["config"]["train"]["epochs"]
    assert {"loss", "rec", "kl", "test_au", "test_kl"} <= set(record["curves"][0])
    assert record["estimators"]["mi_cap"] == pytest.approx(record["estimators"]["mi_mixture_size"] and
                                                           __import__("math").log(record["estimators"]["mi_mixture_size"]))

    table = pd.read_csv(results / "smoke" / "runs.csv")
    assert sorted(table["run_id"]) == sorted(recs)
    row = table.set_index("run_id").loc[record["run_id"]]
    assert row["au"] == pytest.approx(record["metrics"]["au"]) and row["method"] == record["config"]["method"]
    assert "hp.beta" in table.columns and "model.hidden" in table.columns
    summary = pd.read_csv(results / "smoke" / "summary.csv")
    assert len(summary) == expected and (summary["n"] == 1).all()
    assert "| dataset | method |" in out

    # re-running skips every ok run and says so; records are untouched
    stamps = {p: p.stat().st_mtime_ns for p in (results / "smoke" / "runs").iterdir()}
    code, _, err = run(smoke(results, fake_fashion_root), capsys)
    assert code == 0 and f"{expected} already done (skipped), 0 to run" in err
    assert stamps == {p: p.stat().st_mtime_ns for p in (results / "smoke" / "runs").iterdir()}

    # a failed and a missing record are rerun; nothing else
    ids = sorted(recs)
    failed = dict(recs[ids[0]], status="failed")
    (results / "smoke" / "runs" / f"{ids[0]}.json").write_text(json.dumps(failed))
    (results / "smoke" / "runs" / f"{ids[1]}.json").unlink()
    code, _, err = run(smoke(results, fake_fashion_root), capsys)
    assert code == 0 and f"{expected - 2} already done (skipped), 2 to run" in err
    assert all(r["status"] == "ok" for r in records(results).values())

    code, _, err = run(smoke(results, fake_fashion_root, "--force"), capsys)
    assert code == 0 and f"0 already done (skipped), {expected} to run" in err
    assert not list((results / "smoke" / "runs").glob(".*"))  # no temporary files left


def test_same_seed_same_metrics(tmp_path, fake_fashion_root, capsys):
    for name in ("a", "b"):
        assert run(smoke(tmp_path / name, fake_fashion_root, "--methods", "vae"), capsys)[0] == 0
    a, b = records(tmp_path / "a"), records(tmp_path / "b")
    assert a.keys() == b.keys()
    for run_id in a:
        assert a[run_id]["metrics"] == b[run_id]["metrics"] and a[run_id]["curves"] == b[run_id]["curves"]
    # another seed gives other numbers
    assert run(smoke(tmp_path / "c", fake_fashion_root, "--methods", "vae", "--seeds", "1"), capsys)[0] == 0
    c = records(tmp_path / "c")
    assert {r["metrics"]["rec"] for r in c.values()}.isdisjoint({r["metrics"]["rec"] for r in a.values()})


def test_dry_run_trains_nothing(tmp_path, fake_fashion_root, capsys):
    code, out, err = run(smoke(tmp_path, fake_fashion_root, "--dry-run", "--seeds", "0-2", "--no-estimate"), capsys)
    assert code == 0 and not (tmp_path / "smoke").exists()
    assert re.search(r"pinwheel\s+vae\s+3 runs", out) and out.count("todo ") == smoke_runs(seeds=3)
    code, out, err = run(smoke(tmp_path, fake_fashion_root, "--dry-run", "--methods", "vae,lr-vae"), capsys)
    assert code == 0 and not (tmp_path / "smoke").exists()
    assert "estimate" in out.lower() and "lr-vae" in out


@pytest.mark.parametrize("document", ["README.md", "docs/adding-a-method.md"])
def test_readme_plugin_example_runs_through_smoke(document, tmp_path, fake_fashion_root, plugin_dir, capsys):
    """The plugin of the README's "Adding a method" (one screen) and of the full guide in docs/: the
    first Python block of each, run as it is written."""
    text = (ROOT / document).read_text()
    section = text.split("## Adding a method", 1)[1] if document == "README.md" else text
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    plugin_dir({"kl_capacity.py": source})
    code, out, err = run(smoke(tmp_path, fake_fashion_root, "--methods", "kl-capacity"), capsys)
    assert code == 0, err
    recs = records(tmp_path)
    assert len(recs) == 3 and all(r["status"] == "ok" and r["config"]["method"] == "kl-capacity" for r in recs.values())
    assert {r["config"]["dataset"]["name"] for r in recs.values()} == {"fashion-mnist", "pinwheel", "ptb"}
    assert all("kl_gap" in r["curves"][0] for r in recs.values())
    code, out, _ = run(["list", "methods"], capsys)
    assert "kl-capacity" in out
    assert "capacity: float = 5.0 in [0, inf)  # target KL C in nats per example" in out


PLUGINS = {
    "exploding.py": '''
import torch
from benchmark.plugin import Method, register_method

@register_method
class Exploding(Method):
    """Turns its loss into NaN in the second epoch."""
    name = "exploding"
    def loss(self, x, progress):
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        poison = torch.tensor(float("nan")) if progress.epoch >= 1 else 0.0
        return {"loss": rec + kl + poison, "rec": rec, "kl": kl}
''',
    "raising.py": '''
from benchmark.plugin import Method, register_method

@register_method
class Raising(Method):
    """Raises in its loss."""
    name = "raising"
    def loss(self, x, progress):
        raise RuntimeError("boom from the plugin")
''',
}


def test_diverged_and_failed_runs_are_recorded_and_the_grid_goes_on(tmp_path, fake_fashion_root, plugin_dir, capsys):
    plugin_dir(PLUGINS)
    code, _, err = run(smoke(tmp_path, fake_fashion_root, "--methods", "exploding,raising,vae"), capsys)
    assert code == 1  # some runs failed
    by_method: dict[str, list[dict]] = {}
    for record in records(tmp_path).values():
        by_method.setdefault(record["config"]["method"], []).append(record)
    assert all(r["status"] == "diverged" and r["diverged_epoch"] == 2 and len(r["curves"]) == 1
               for r in by_method["exploding"])
    assert all(r["status"] == "failed" and "boom from the plugin" in r["error"]["message"]
               and "Traceback" in r["error"]["traceback"] for r in by_method["raising"])
    assert all(r["status"] == "ok" for r in by_method["vae"])
    table = pd.read_csv(tmp_path / "smoke" / "runs.csv")
    assert sorted(table["status"]) == ["diverged"] * 3 + ["failed"] * 3 + ["ok"] * 3  # 3 data sets
    assert "boom from the plugin" in err


def test_ctrl_c_leaves_no_partial_record(tmp_path, fake_fashion_root, plugin_dir, capsys):
    plugin_dir({"interrupt.py": PLUGINS["raising.py"].replace("RuntimeError(\"boom from the plugin\")", "KeyboardInterrupt")
                .replace('"raising"', '"zz-interrupt"')})  # runs after vae
    code, _, err = run(smoke(tmp_path, fake_fashion_root, "--methods", "vae,zz-interrupt"), capsys)
    assert code == 130 and "rerun the same command to continue" in err
    recs = records(tmp_path)
    assert recs and all(r["config"]["method"] == "vae" and r["status"] == "ok" for r in recs.values())
    assert not list((tmp_path / "smoke" / "runs").glob(".*"))
    assert sorted(pd.read_csv(tmp_path / "smoke" / "runs.csv")["run_id"]) == sorted(recs)


def test_broken_plugin_file_is_named(tmp_path, plugin_dir, capsys):
    folder = plugin_dir({"broken.py": "import no_such_module_anywhere\n"})
    code, _, err = run(["list", "methods"], capsys)
    assert code == 2 and str(folder / "broken.py") in err and "no_such_module_anywhere" in err


def test_plugin_breaking_the_contract_is_named(tmp_path, plugin_dir, capsys):
    folder = plugin_dir({"nameless.py": "from benchmark.plugin import Method, register_method\n\n"
                                        "@register_method\nclass Nameless(Method):\n    def loss(self, x, p):\n        pass\n"})
    code, _, err = run(["list", "methods"], capsys)
    assert code == 2 and str(folder / "nameless.py") in err and "`name`" in err


@pytest.mark.parametrize("args, message", [
    (["--grid", "nope"], "unknown grid 'nope'; valid grids: "),
    (["--methods", "nope"], "unknown method 'nope'; valid methods: aggressive, beta-vae"),
    (["--datasets", "nope"], "unknown dataset 'nope'; valid datasets: celeba, chessboard"),
])
def test_unknown_names_exit_2_and_list_valid_names(tmp_path, capsys, args, message):
    code, _, err = run(["run", "--results", str(tmp_path), *args], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_malformed_grid_file_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[[datasets]]\nname = "pinwheel"\n[[methods]]\nname = "beta-vae"\nbta = 1\n')
    code, _, err = run(["run", "--grid", str(path), "--results", str(tmp_path / "r")], capsys)
    assert code == 2 and str(path) in err and "`methods[0].bta`" in err and "valid: beta" in err
    assert not (tmp_path / "r").exists()


def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path, no_system_data, capsys):
    (tmp_path / "nowhere").mkdir()  # a data root that does not exist is its own error (tests/system/test_bad_inputs.py)
    code, _, err = run(["run", "--grid", "smoke", "--results", str(tmp_path / "r"), "--data-root", str(tmp_path / "nowhere")], capsys)
    assert code == 2
    assert str(tmp_path / "nowhere") in err and "apt-get install dataset-fashion-mnist" in err
    assert "--data-root" in err and "--download" in err
    assert not (tmp_path / "r").exists()


def test_cuda_without_gpu_is_a_clear_error(tmp_path, fake_fashion_root, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, _, err = run(smoke(tmp_path, fake_fashion_root)[:-2] + ["--device", "cuda"], capsys)
    assert code == 2 and "--device cpu" in err


def test_list_shows_everything(capsys):
    code, out, _ = run(["list"], capsys)
    assert code == 0
    for word in ("vae", "beta: float = 4.0", "fashion-mnist", "pinwheel", "quick", "smoke", "mlp", "bernoulli"):
        assert word in out


def test_help_is_available_for_every_command():
    for args in ([], ["run"], ["list"]):
        out = subprocess.run([sys.executable, "-m", "benchmark", *args, "--help"], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0 and "usage: python -m benchmark" in out.stdout


def test_tf32_on_a_cpu_is_one_line_error_before_anything_trains(tmp_path, capsys):
    grid = tmp_path / "tf32.toml"
    grid.write_text('seeds = [0]\n[train]\nepochs = 1\nbatch_size = 16\nprecision = "tf32"\n[model]\nlatent_dim = 2\n'
                    '[[datasets]]\nname = "pinwheel"\ntrain_size = 2000\ntest_size = 1000\n[[methods]]\nname = "vae"\n')
    assert main(["run", "--grid", str(grid), "--results", str(tmp_path / "results"), "--device", "cpu"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train.precision = 'tf32' needs a CUDA GPU" in errors[0] and "fp32 or bf16" in errors[0]
    assert not list((tmp_path / "results").rglob("*.json"))
