"""Issue 14: every mistake is caught before anything trains, and nothing crashes on a bad results
folder. One test per row of the issue's table, through the command line (``benchmark.cli.main``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.planning.grid import load_grid
from commands import cli, one_error_line
from fakes import write_fake_fashion

ROOT = Path(__file__).resolve().parents[2]

TINY = '''
seeds = [0]
[train]
epochs = 1
batch_size = 32
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
'''


def grid_file(folder: Path, text: str, name: str = "bad") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def records(results: Path, grid: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / grid / "runs").glob("*.json"))}


# --- settings out of range: caught when the grid is loaded ------------------------------------

@pytest.mark.parametrize("edit, method, field", [
    (("epochs = 1", "epochs = 0"), "vae", "train.epochs"),
    (("epochs = 1", "epochs = -2"), "vae", "train.epochs"),
    (("latent_dim = 2", "latent_dim = 0"), "vae", "model.latent_dim"),
    (("batch_size = 32", "batch_size = 0"), "vae", "train.batch_size"),
    (("batch_size = 32", "batch_size = 32\nlr = -1"), "vae", "train.lr"),
    (("test_size = 32", "test_size = 1"), "vae", "datasets[0].test_size"),
    (("train_size = 64", "train_size = 0"), "vae", "datasets[0].train_size"),
    (("hidden = [8]", 'hidden = [8]\nactivation = "bogus"'), "vae", "model.activation"),
    (("hidden = [8]", "hidden = [8, 0]"), "vae", "model.hidden"),
    (("hidden = [8]", 'arch = "conv"'), "vae", "model.arch"),  # pinwheel is no image
    (("[eval]", "[eval]\ncurve_every = 0"), "vae", "eval.curve_every"),
    (("[eval]", "[eval]\nnoise_draws = 1"), "vae", "eval.noise_draws"),
    (("[eval]", "[eval]\nau_threshold = nan"), "vae", "eval.au_threshold"),
    # (`beta = -1`, `nan`, `inf`: tests/planning/test_grid.py, since methods declare their ranges)
    ((), 'lr-vae\nalpha_schedule = "bogus"', "methods[0].alpha_schedule"),
    ((), "lr-vae\nalpha_schedule_options = {duration = 2}", "methods[0].alpha_schedule_options"),
    ((), "lr-vae\nalpha_schedule_options = {duration = nan}", "methods[0].alpha_schedule_options"),
    ((), 'il-lid-vae\nL_schedule = "decay"', "methods[0].L_schedule_options"),  # decay needs its start
])
@pytest.mark.parametrize("dry_run", [False, True])
def test_out_of_range_settings_exit_2_before_anything_trains(tmp_path, capsys, edit, method, field, dry_run):
    text = TINY.replace(*edit) if edit else TINY
    method, _, extra = method.partition("\n")
    path = grid_file(tmp_path, text + f'[[methods]]\nname = "{method}"\n{extra}\n')
    results = tmp_path / "results"
    code, _, err = cli(["run", "--grid", str(path), "--results", str(results), "--device", "cpu",
                        *(["--dry-run"] if dry_run else [])], capsys)  # the dry run with its estimate
    line = one_error_line(err)
    assert code == 2 and f"field `{field}`" in line and str(path) in line
    assert not results.exists()


# --- settings that ask for more examples than the data hold: refused, never clipped -------------

@pytest.mark.parametrize("sets, method, field, fix", [
    (["datasets.pinwheel.train_size=20000"], "vae", "datasets[0].train_size",
     "train_size = 20000 is more than the 10000 examples of pinwheel's training split: lower it to at most 10000"),
    (["datasets.pinwheel.test_size=3000"], "vae", "datasets[0].test_size",
     "test_size = 3000 is more than the 2000 examples of pinwheel's test split: lower it to at most 2000"),
    (["train.batch_size=100"], "vae", "train.batch_size", "batch_size = 100 is more than the 64 training examples of "
     "pinwheel: lower train.batch_size to at most 64 or raise train_size"),
    (["train.batch_size=60"], "aggressive", "train.batch_size", "batch_size = 60 is more than the 58 training examples "
     "of pinwheel a run trains on (6 of 64 held out for validation): lower train.batch_size to at most 58"),
    (["eval.nll_examples=33"], "vae", "eval.nll_examples", "nll_examples = 33 is more than the 32 examples of "
     "pinwheel's test split: lower eval.nll_examples to at most 32 or raise test_size"),
    (["eval.mi_examples=40"], "vae", "eval.mi_examples", "lower eval.mi_examples to at most 32"),
    (['eval.mi_split="train"', "eval.mi_examples=65"], "vae", "eval.mi_examples",
     "mi_examples = 65 is more than the 64 examples of pinwheel's training split a run trains on (mi_split = "
     "'train'): lower eval.mi_examples to at most 64 or raise train_size"),
    (["eval.geometry_points=33"], "vae", "eval.geometry_points", "lower eval.geometry_points to at most 32"),
    (["eval.noise_points=33"], "vae", "eval.noise_points", "lower eval.noise_points to at most 32"),
    (['eval.mi_mixture="batch"', "eval.mi_batch_size=33"], "vae", "eval.mi_batch_size",
     "lower eval.mi_batch_size to at most 32"),
])
@pytest.mark.parametrize("dry_run", [False, True])
def test_settings_beyond_the_published_splits_exit_2_before_anything_trains(tmp_path, capsys, sets, method, field,
                                                                            fix, dry_run):
    path = grid_file(tmp_path, TINY + f'[[methods]]\nname = "{method}"\n')
    results = tmp_path / "results"
    code, _, err = cli(["run", "--grid", str(path), "--results", str(results), "--device", "cpu",
                        *[arg for value in sets for arg in ("--set", value)],
                        *(["--dry-run", "--no-estimate"] if dry_run else [])], capsys)
    line = one_error_line(err)
    assert code == 2 and f"field `{field}`" in line and fix in line and str(path) in line, line
    assert not results.exists()


@pytest.mark.parametrize("edits, fix", [
    ([("train_size = 64", "train_size = 512")], "train_size = 512 is more than the 300 examples of fashion-mnist's "
     "training split: lower it to at most 300"),
    ([("test_size = 32\n", ""), ("nll_examples = 16", "nll_examples = 200")], "nll_examples = 200 is more than the "
     "150 examples of fashion-mnist's test split: lower eval.nll_examples to at most 150 ("),
])
def test_settings_beyond_the_copy_in_the_data_root_exit_2_before_anything_trains(tmp_path, fake_fashion_root, capsys,
                                                                                  edits, fix):
    text = TINY.replace('"pinwheel"', '"fashion-mnist"')
    for edit in edits:
        text = text.replace(*edit)
    path = grid_file(tmp_path, text + '[[methods]]\nname = "vae"\n')  # within the published sizes
    results = tmp_path / "results"
    code, _, err = cli(["run", "--grid", str(path), "--results", str(results), "--device", "cpu",
                        "--data-root", str(fake_fashion_root)], capsys)
    line = one_error_line(err)
    assert code == 2 and fix in line, line
    assert "the copy of fashion-mnist that was found holds 300 training / 150 test examples; published: 60000 / 10000" in line
    assert not (results / "bad" / "plan.json").exists() and not records(results, "bad") and "[1/1]" not in err


# --- data: where it comes from -----------------------------------------------------------------

def test_data_root_that_does_not_exist_or_lacks_the_data_set(tmp_path, no_system_data, monkeypatch, capsys):
    from benchmark.data import roots

    write_fake_fashion(tmp_path / "system" / "fashion-mnist", gz=True)  # the system's copy is there
    monkeypatch.setattr(roots, "SYSTEM_DATA_ROOTS", [tmp_path / "system"])
    base = ["run", "--grid", "smoke", "--methods", "vae", "--datasets", "fashion-mnist", "--device", "cpu",
            "--results", str(tmp_path / "results")]
    for extra in ([], ["--dry-run", "--no-estimate"]):
        code, _, err = cli(base + ["--data-root", str(tmp_path / "no" / "such"), *extra], capsys)
        assert code == 2 and f"--data-root {tmp_path / 'no' / 'such'} does not exist" in one_error_line(err)
    (tmp_path / "empty").mkdir()
    code, _, err = cli(base + ["--data-root", str(tmp_path / "empty")], capsys)
    assert code == 2 and "fashion-mnist data not found" in err and "Traceback" not in err
    for place in ("empty", "empty/FashionMNIST/raw", "empty/fashion-mnist"):  # every place searched
        assert f"  {tmp_path / place} (" in err
    assert str(tmp_path / "system") not in err  # the data root given is the only place
    assert not (tmp_path / "results").exists()


def test_records_name_the_files_their_data_came_from(tmp_path, fake_fashion_root, capsys):
    from benchmark.data import files
    from benchmark.results.record import RECORD_VERSION, parse_record

    text = TINY.replace('"pinwheel"', '"fashion-mnist"') + '[[datasets]]\nname = "pinwheel"\ntrain_size = 64\ntest_size = 32\n'
    path = grid_file(tmp_path, text + '[[methods]]\nname = "vae"\n', name="tiny")
    misses = files._source_file.cache_info().misses
    code, _, err = cli(["run", "--grid", str(path), "--results", str(tmp_path), "--device", "cpu",
                        "--data-root", str(fake_fashion_root)], capsys)
    assert code == 0, err
    by_data = {r["config"]["dataset"]["name"]: r for r in records(tmp_path, "tiny").values()}
    assert by_data["fashion-mnist"]["record_version"] == RECORD_VERSION == 5
    data = by_data["fashion-mnist"]["data"]
    assert data["kind"] == "source" and len(data["files"]) == 4
    for entry in data["files"]:
        path = Path(entry["path"])
        assert path.parent == fake_fashion_root.resolve() and entry["size"] == path.stat().st_size
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert by_data["pinwheel"]["data"] == {"kind": "generated", "files": []}
    assert files._source_file.cache_info().misses - misses <= 4  # each file hashed once in this process

    # a record of version 2 (before `data` and `resumed`) still loads and keeps its shape
    superseded = sorted((ROOT / "results" / "quick" / "superseded").glob("*.json"))  # the records the rerun replaced
    old = next(r for r in (json.loads(path.read_text()) for path in superseded) if r["record_version"] == 2)
    assert "data" not in old
    again = json.loads(parse_record(json.dumps(old)).to_json())
    assert again == json.loads(json.dumps(old))


# --- results folders ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> Path:
    """Results of one tiny run (`smoke`'s vae on pinwheel, seed 0), to be copied by each test."""
    results = tmp_path_factory.mktemp("one-run") / "results"
    code = main(["run", "--grid", "smoke", "--methods", "vae", "--datasets", "pinwheel", "--results", str(results),
                 "--device", "cpu"])
    assert code == 0
    return results


def copy_of(results: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(results, tmp_path / "results"))


def test_files_that_are_no_record_are_listed_and_the_tables_stay_fresh(tmp_path, one_run, capsys):
    results = copy_of(one_run, tmp_path)
    runs = results / "smoke" / "runs"
    (only,) = records(results, "smoke").values()
    (runs / "0123456789abcdef.json").write_text(json.dumps(dict(only, run_id="0123456789abcdef", wall_time_s="slow")))
    (runs / "notes.json").write_text("[1, 2]")
    args = ["run", "--grid", "smoke", "--methods", "vae", "--datasets", "pinwheel", "--results", str(results),
            "--device", "cpu"]
    code, _, err = cli(args + ["--seeds", "0-1"], capsys)  # one run done, one to do
    assert code == 0 and "Traceback" not in err
    warning = next(line for line in err.splitlines() if line.startswith("warning: 2 file(s)"))
    assert "0123456789abcdef.json (wall_time_s: 'slow' is not an int or float)" in warning
    assert "notes.json (not a JSON object)" in warning
    table = pd.read_csv(results / "smoke" / "runs.csv")
    assert sorted(table["run_id"]) == sorted(p.stem for p in runs.glob("*.json") if len(p.stem) == 16
                                             and p.stem != "0123456789abcdef")
    assert len(table) == 2

    # a truncated record of a run of the command: said so, rerun, replaced
    path = runs / f"{only['run_id']}.json"
    path.write_text(path.read_text()[:100])
    code, _, err = cli(args, capsys)
    assert code == 0 and f"warning: the record of {only['run_id']}" in err and "rerun and the file replaced" in err
    assert json.loads(path.read_text())["status"] == "ok"

    # the tables are rebuilt even when nothing is left to run
    (results / "smoke" / "runs.csv").unlink()
    code, _, err = cli(args, capsys)
    assert code == 0 and "0 to run" in err and len(pd.read_csv(results / "smoke" / "runs.csv")) == 2


def test_results_folder_that_cannot_be_written_is_exit_2(tmp_path, monkeypatch, capsys):
    args = ["run", "--grid", "smoke", "--methods", "vae", "--datasets", "pinwheel", "--device", "cpu"]
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = cli(args + ["--results", str(tmp_path / "a-file")], capsys)
    assert code == 2 and "cannot be written" in one_error_line(err) and "--results DIR" in err

    import tempfile

    read_only, real = tmp_path / "read-only", tempfile.mkstemp
    read_only.mkdir()

    def denied(*a, dir=None, **k):  # what a read-only folder answers (the tests may run as root)
        if dir is not None and Path(dir).is_relative_to(read_only):
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    code, _, err = cli(args + ["--results", str(read_only)], capsys)
    line = one_error_line(err)
    assert code == 2 and f"results folder {read_only / 'smoke'} cannot be written (Permission denied" in line
    assert not any(read_only.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_results_folder_is_exit_2(tmp_path, capsys):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    code, _, err = cli(["run", "--grid", "smoke", "--methods", "vae", "--datasets", "pinwheel", "--device", "cpu",
                        "--results", str(tmp_path / "ro")], capsys)
    assert code == 2 and "cannot be written" in one_error_line(err)


def test_user_grid_named_like_a_builtin_grid_is_refused(tmp_path, one_run, capsys):
    results = copy_of(one_run, tmp_path)
    before = records(results, "smoke")
    mine = grid_file(tmp_path / "mine", TINY + '[[methods]]\nname = "vae"\n', name="smoke")
    for extra in ([], ["--dry-run", "--no-estimate"]):
        code, _, err = cli(["run", "--grid", str(mine), "--results", str(results), "--device", "cpu", *extra], capsys)
        line = one_error_line(err)
        assert code == 2 and "benchmark/grids/smoke.toml" in line and str(mine) in line
        assert "rename the file" in line and "--results DIR" in line
    assert records(results, "smoke") == before
    code, _, err = cli(["run", "--grid", str(mine), "--results", str(tmp_path / "mine-results"), "--dry-run",
                        "--no-estimate"], capsys)
    assert code == 0, err
    # the built-in grid itself, and the same grid narrowed or extended, are the same grid
    code, _, err = cli(["run", "--grid", "smoke", "--results", str(results), "--dry-run", "--no-estimate",
                        "--seeds", "0-1"], capsys)
    assert code == 0, err


# --- command line --------------------------------------------------------------------------------

def test_descending_seed_range_is_named(capsys):
    code, _, err = cli(["run", "--seeds", "5-1"], capsys)
    line = one_error_line(err)
    assert code == 2 and "--seeds" in line and "'5-1'" in line and "1-5" in line and "filters" not in line


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_bad_pack_size_is_named(value, capsys):
    code, _, err = cli(["run", "--pack", value, "--dry-run", "--no-estimate"], capsys)
    line = one_error_line(err)
    assert code == 2 and "--pack" in line and (f"'{value}'" in line or value in line)


def test_plugins_may_name_one_file(tmp_path, plugin_dir, capsys):
    plugin_dir({})
    source = (ROOT / "tests" / "test_cli.py").read_text()
    raising = re.search(r'"raising.py": \'\'\'\n(.*?)\'\'\'', source, re.S).group(1)
    path = tmp_path / "elsewhere" / "raising.py"
    path.parent.mkdir()
    path.write_text(raising)
    code, out, err = cli(["--plugins", str(path), "list", "methods"], capsys)
    assert code == 0 and "raising" in out, err
    code, _, err = cli(["--plugins", str(tmp_path / "notes.txt"), "list", "methods"], capsys)
    assert code == 2 and "does not exist" in one_error_line(err) and "one plugin .py file" in err


# --- report ----------------------------------------------------------------------------------------

def test_report_on_a_wrong_path_is_an_error_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "README.md").write_text("the committed report\n")
    for results in (tmp_path / "wrong" / "path", tmp_path):
        code, _, err = cli(["report", "--results", str(results), "--out", str(out)], capsys)
        assert code == 2 and str(results) in one_error_line(err)
    assert (out / "README.md").read_text() == "the committed report\n" and len(list(out.iterdir())) == 1
    code, _, err = cli(["report", "--results", str(tmp_path), "--out", str(out / "README.md")], capsys)
    assert code == 2 and "is a file, not a folder" in one_error_line(err)


def test_report_of_one_grid_keeps_the_readme_and_other_grids(tmp_path, one_run, capsys):
    out = tmp_path / "reports"
    (out / "other").mkdir(parents=True)
    (out / "README.md").write_text("the committed report\n")
    (out / "other" / "MANIFEST").write_text("table.md\nMANIFEST\n")
    (out / "other" / "table.md").write_text("another grid's table\n")
    code, _, err = cli(["report", "--results", str(one_run), "--out", str(out)], capsys)
    line = one_error_line(err)  # `other` has no results here: its report is not this one to replace
    assert code == 2 and "holds the report of grid(s) other" in line and "--out DIR" in line
    code, _, err = cli(["report", "--results", str(one_run), "--out", str(out), "--grid", "smoke"], capsys)
    assert code == 0, err
    assert (out / "README.md").read_text() == "the committed report\n"
    assert "## Grid `smoke`" in (out / "smoke.md").read_text() and (out / "smoke" / "MANIFEST").is_file()
    assert (out / "other" / "table.md").read_text() == "another grid's table\n"


# --- resumed runs ------------------------------------------------------------------------------------

def test_resumed_run_times_count_every_process(tmp_path, monkeypatch, capsys):
    from benchmark.report.load import load_grid_records
    from benchmark.report.missing import missing_section
    from benchmark.execution import runner
    from benchmark.results.store import ResultStore

    config = load_grid(grid_file(tmp_path, TINY.replace("epochs = 1", "epochs = 3") + '[[methods]]\nname = "vae"\n',
                                 name="tiny")).expand()[0]
    checkpoint, real_run_epoch = tmp_path / "ckpt.pt", runner.Trainer.run_epoch

    def slow_then_killed(self):
        if self.epoch == 2:
            raise KeyboardInterrupt  # stands in for a kill after two checkpointed epochs
        time.sleep(0.3)
        return real_run_epoch(self)

    monkeypatch.setattr(runner.Trainer, "run_epoch", slow_then_killed)
    with pytest.raises(KeyboardInterrupt):
        runner.execute_pack([config], device="cpu", log=lambda _: None, checkpoint=checkpoint, checkpoint_every=1)[0]
    monkeypatch.setattr(runner.Trainer, "run_epoch", real_run_epoch)
    t0 = time.perf_counter()
    record = runner.execute_pack([config], device="cpu", log=lambda _: None, checkpoint=checkpoint, checkpoint_every=1)[0].record
    last_process = time.perf_counter() - t0
    assert record.status == "ok" and record.resumed == 1
    assert record.wall_time_s >= record.train_time_s >= 0.6  # the two slow epochs of the first process
    assert record.wall_time_s > last_process + 0.5  # the first process's time is in

    store = ResultStore(tmp_path / "results", "tiny")
    store.write(record)
    assert pd.read_csv(store.write_table())["resumed"].tolist() == [1]
    missing = "\n".join(missing_section(load_grid_records(store.dir)))  # the report's "What is missing"
    assert f"`{record.run_id}`" in missing and "Resumed from a checkpoint (1)" in missing and "resumed 1 time" in missing


# --- exit codes --------------------------------------------------------------------------------------

def test_exit_codes_are_documented_and_true(tmp_path, plugin_dir, capsys):
    running = (ROOT / "docs" / "running.md").read_text()  # the README's table of contents links it
    documented = dict(re.findall(r"^\| `(\d+)` \| (.+?) \|$", running.split("## Exit codes", 1)[1], re.M))
    assert set(documented) == {"0", "1", "2", "130"}
    assert "diverged" in documented["0"] and "failed" in documented["1"] and "interrupted" in documented["130"]
    source = (ROOT / "tests" / "test_cli.py").read_text()
    plugins = dict(re.findall(r'"(\w+)\.py": \'\'\'\n(.*?)\'\'\'', source, re.S))
    plugins["interrupt"] = plugins["raising"].replace('RuntimeError("boom from the plugin")', "KeyboardInterrupt") \
        .replace('"raising"', '"interrupting"')
    plugin_dir({f"{name}.py": text for name, text in plugins.items()})
    base = ["run", "--grid", "smoke", "--datasets", "pinwheel", "--device", "cpu", "--retries", "0"]
    for method, expected in (("exploding", 0), ("raising", 1), ("interrupting", 130), ("nope", 2)):
        code, _, err = cli(base + ["--methods", method, "--results", str(tmp_path / method)], capsys)
        assert code == expected, (method, err)
    assert {r["status"] for r in records(tmp_path / "exploding", "smoke").values()} == {"diverged"}
