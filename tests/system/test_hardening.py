"""Nothing mixed, nothing orphaned, nothing lost: grid names are folder names, a results folder
belongs to one grid (claimed under a lock that names its holder), write failures after training
lose nothing and crash nothing, SIGTERM is Ctrl-C, files get the user's umask, a damaged
checkpoint costs no attempt, contradictory options are errors, and a dry run finds the plugin
files once, each run id once and each code key once per setting;
a plugin cannot end the process at import, and a slow one is named once. Through the command line."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmark.results import store as store_module
from benchmark.planning.prepare import prepare
from commands import cli, one_error_line

ROOT = Path(__file__).resolve().parents[2]

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


# --- 2. one grid per results folder, claimed under a lock ---------------------------------------

def test_a_held_plan_lock_is_waited_on_and_names_its_holder(tmp_path, capsys, monkeypatch):
    grid, results = tiny(tmp_path), tmp_path / "results"
    held = store_module.RunLock.acquire(results / "tiny" / "locks" / "plan.lock")
    monkeypatch.setattr(store_module, "LOCK_WAIT_S", 0.5)
    try:
        code, _, err = cli(run_args(grid, results), capsys)
    finally:
        held.release()
    line = one_error_line(err)
    assert code == 2 and f"pid {os.getpid()} on " in line and " since 20" in line and "run this one again" in line
    assert "waiting up to 0 s for the plan of" in err
    assert not (results / "tiny" / "runs").exists()
    code, _, err = cli(run_args(grid, results), capsys)  # released: it runs
    assert code == 0, err


def test_a_folder_another_grid_claimed_meanwhile_is_refused(tmp_path, capsys, monkeypatch):
    mine, other = tiny(tmp_path / "mine"), tiny(tmp_path / "other", method="beta-vae")
    results = tmp_path / "results"
    other_plan = prepare(str(other), str(results)).plan
    from benchmark.planning import prepare as prepare_module

    real = prepare_module.check_available

    def other_command_claims_first(*args, **kwargs):  # after `mine` read the folder, before it claims it
        prepare_module.ResultStore(results, "tiny").write_plan(other_plan)
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "check_available", other_command_claims_first)
    code, _, err = cli(run_args(mine, results), capsys)
    line = one_error_line(err)
    assert code == 2 and str(other) in line and "rename the file" in line
    assert not records(results) and json.loads((results / "tiny" / "plan.json").read_text())["source"] == str(other)


# --- 3. write failures after training --------------------------------------------------------

def test_disk_full_fails_the_run_keeps_what_is_stored_and_runs_nothing_more(tmp_path, capsys, monkeypatch):
    grid, results = tiny(tmp_path), tmp_path / "results"
    real, writes = store_module.atomic_write_text, []

    def full_disk(path: Path, text: str) -> None:
        if path.parent.name == "runs":
            writes.append(path)
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, text)

    monkeypatch.setattr(store_module, "atomic_write_text", full_disk)
    code, _, err = cli(run_args(grid, results, "--seeds", "0-2"), capsys)
    line = one_error_line(err)
    assert code == 1 and f"cannot write {writes[1]} (No space left on device): free space" in line
    assert "1 ok, 1 failed, 1 not run" in err
    (stored,) = records(results).values()
    assert stored["status"] == "ok" and Path(writes[0]).stem == stored["run_id"]
    assert list(pd.read_csv(results / "tiny" / "runs.csv")["run_id"]) == [stored["run_id"]]
    assert not list((results / "tiny" / "runs").glob(".*"))


class FullDisk(io.RawIOBase):
    """A file on a full disk: every write fails as Python's writes do (ENOSPC)."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_kept_model_on_a_full_disk_fails_the_run_keeps_what_is_stored_and_runs_nothing_more(tmp_path, capsys,
                                                                                                 monkeypatch):
    import torch

    grid, results = tiny(tmp_path), tmp_path / "results"
    real, saves = torch.save, []

    def full_disk(obj, f, *args, **kwargs):
        name = Path(f if isinstance(f, (str, os.PathLike)) else f.name)
        if name.parent.name == "models":
            saves.append(name)
            if len(saves) == 2:  # the second kept model finds the disk full
                if isinstance(f, (str, os.PathLike)):  # torch's own writer: what it raises on a full disk (/dev/full)
                    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
                return real(obj, FullDisk(), *args, **kwargs)
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    code, _, err = cli(run_args(grid, results, "--seeds", "0-2", "--keep-model"), capsys)
    line = one_error_line(err)
    models = results / "tiny" / "models"
    (stored,) = records(results).values()
    assert code == 1 and f"cannot write {models / stored['run_id']}" not in line
    assert re.search(rf"cannot write {re.escape(str(models))}/\w+\.pt \(No space left on device\): free space", line)
    assert "1 ok, 1 failed, 1 not run" in err
    assert stored["status"] == "ok" and [p.name for p in models.iterdir()] == [f"{stored['run_id']}.pt"]
    assert set(torch.load(models / f"{stored['run_id']}.pt"))  # the stored model is whole
    assert list(pd.read_csv(results / "tiny" / "runs.csv")["run_id"]) == [stored["run_id"]]


@pytest.mark.parametrize("in_the_way", ["record", "runs.csv"])
def test_a_folder_where_a_file_goes_is_found_before_training(tmp_path, capsys, in_the_way):
    grid, results = tiny(tmp_path), tmp_path / "results"
    run_id = prepare(str(grid), str(results)).job.todo[0].run_id
    path = results / "tiny" / ("runs" if in_the_way == "record" else "") / (f"{run_id}.json" if in_the_way == "record"
                                                                            else "runs.csv")
    path.mkdir(parents=True)
    code, _, err = cli(run_args(grid, results), capsys)
    line = one_error_line(err)
    assert code == 2 and str(path) in line and "move away what is in the way" in line
    assert not (results / "tiny" / "plan.json").exists() and "[1/1]" not in err  # nothing trained


# --- 4. SIGTERM is Ctrl-C; orphaned temporary files are removed ----------------------------------

def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_is_ctrl_c_and_the_same_command_continues(tmp_path):
    grid, results = tiny(tmp_path, epochs=12, train_size=512), tmp_path / "results"
    command = [sys.executable, "-m", "benchmark", *run_args(grid, results, "--seeds", "0-1", "--workers", "2",
                                                             "--checkpoint-every", "1")]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoints = results / "tiny" / "checkpoints"
    deadline = time.monotonic() + 600  # seconds on an idle machine
    while not (checkpoints.exists() and list(checkpoints.glob("*.pt"))):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no checkpoint: {process.communicate()[0]}")
        time.sleep(0.1)
    workers = [pid for child in _children(process.pid) for pid in [child, *_children(child)]]
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 130 and "rerun the same command to continue" in out, out
    time.sleep(1)
    assert workers and not [pid for pid in workers if _alive(pid)], out

    dead = subprocess.Popen(["true"])  # a pid no process has any more
    dead.wait()
    orphans = [results / "tiny" / "runs" / f".x.json.{dead.pid}@{store_module.HOST}.0123abcd.tmp",
               checkpoints / f".x.pt.{dead.pid}@{store_module.HOST}.0123abcd.tmp",
               results / "tiny" / ".runs.csv.k2j4_x9q.tmp"]  # older code's name, two hours old
    for path in orphans:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("partial")
    os.utime(orphans[-1], (time.time() - 7200,) * 2)
    alive = results / "tiny" / f".plan.json.{os.getpid()}@{store_module.HOST}.0123abcd.tmp"  # a live writer's
    alive.write_text("being written")

    again = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stdout
    assert re.search(r"removed \d+ temporary file\(s\)", again.stdout) and "resumed from" in again.stdout
    assert list(results.rglob(".*.tmp")) == [alive]
    recs = records(results)
    assert len(recs) == 2 and all(r["status"] == "ok" and len(r["curves"]) == 12 for r in recs.values())


# --- 5. the user's umask; a damaged checkpoint ------------------------------------------------------

def test_files_are_created_with_the_users_umask(tmp_path, capsys):
    grid, results = tiny(tmp_path), tmp_path / "results"
    previous = os.umask(0o027)
    try:
        code, _, err = cli(run_args(grid, results), capsys)
    finally:
        os.umask(previous)
    assert code == 0, err
    (record,) = (results / "tiny" / "runs").glob("*.json")
    for path in (record, results / "tiny" / "runs.csv", results / "tiny" / "plan.json"):
        assert path.stat().st_mode & 0o777 == 0o640, path


def test_a_damaged_checkpoint_is_discarded_without_costing_an_attempt(tmp_path, capsys):
    grid, results = tiny(tmp_path, epochs=2), tmp_path / "results"
    run_id = prepare(str(grid), str(results)).job.todo[0].run_id
    checkpoint = results / "tiny" / "checkpoints" / f"{run_id}.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"PK\x03\x04 cut short by a full disk")
    code, _, err = cli(run_args(grid, results, "--retries", "0"), capsys)
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if "discarded" in line]
    assert str(checkpoint) in line and "cannot be read" in line
    (record,) = records(results).values()
    assert record["status"] == "ok" and record["attempt"] == 1


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


def test_more_workers_than_runs_start_one_process_per_run():
    """``--workers 64`` for 3 runs: 3 worker processes (slots), not 64."""
    import torch
    from benchmark.execution.executor import LokyBackend, RunOptions

    assert len(LokyBackend(RunOptions(workers=64), torch.device("cpu"), runs=3).slots) == 3
    assert len(LokyBackend(RunOptions(workers=2), torch.device("cpu"), runs=3).slots) == 2


# --- 7. a dry run of many runs scales; plugins cannot end the process; slow plugins are named once ---

PLUGIN = '''
from benchmark.plugin import Method, register_method


@register_method
class Plain(Method):
    """rec + KL."""

    name = "{name}"

    def loss(self, x, progress):
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {{"loss": rec + kl, "rec": rec, "kl": kl}}
'''


def counted(calls: list[str], name: str, function):
    """``function``, appending ``name`` to ``calls`` on each call."""
    def wrapper(*args, **kwargs):
        calls.append(name)
        return function(*args, **kwargs)
    return wrapper


def dry_run_counting(tmp_path: Path, capsys, monkeypatch, calls: list[str]) -> int:
    """A dry run of the smoke grid's 3 seeds with the plugin globs, run ids and code keys counted in
    ``calls``; the number of runs it listed."""
    from benchmark import discovery
    from benchmark.config import RunConfig
    from benchmark.planning import code_key

    monkeypatch.setattr(discovery, "RACY_S", 0.0)  # folders edited just now count as settled
    monkeypatch.setattr(discovery, "_discovered", None)
    monkeypatch.setattr(discovery, "plugin_files", counted(calls, "glob", discovery.plugin_files))
    monkeypatch.setattr(RunConfig, "run_id", property(counted(calls, "run_id", RunConfig.run_id.fget)))
    monkeypatch.setattr(code_key, "code_version", counted(calls, "code", code_key.code_version))
    code, out, err = cli(["run", "--grid", "smoke", "--seeds", "0-2", "--results", str(tmp_path / "results"),
                          "--dry-run", "--no-estimate"], capsys)
    assert code == 0, err
    return out.count("\ntodo ")


def test_a_dry_run_finds_the_plugin_files_once(tmp_path, capsys, monkeypatch):
    from conftest import smoke_runs

    calls: list[str] = []
    assert dry_run_counting(tmp_path, capsys, monkeypatch, calls) == smoke_runs(seeds=3)
    assert calls.count("glob") == 1


def test_plugin_files_written_during_a_process_are_found(plugin_dir, capsys):
    folder = plugin_dir({"first.py": PLUGIN.format(name="first")})
    stamp = folder.stat().st_mtime_ns
    code, out, err = cli(["list", "methods"], capsys)
    assert code == 0 and "first" in out, err
    plugin_dir({"second.py": PLUGIN.format(name="second")})
    os.utime(folder, ns=(stamp, stamp))  # within the folder clock's resolution: its time looks unchanged
    code, out, err = cli(["list", "methods"], capsys)
    assert code == 0 and "second" in out, err


def test_a_dry_run_finds_each_run_id_once_and_each_code_key_once_per_setting(tmp_path, capsys, monkeypatch):
    from conftest import smoke_runs

    calls: list[str] = []
    assert dry_run_counting(tmp_path, capsys, monkeypatch, calls) == smoke_runs(seeds=3)
    # the code once per setting trained alone, once trained in a pack (code_key.PACKED_ONLY)
    assert (calls.count("run_id"), calls.count("code")) == (smoke_runs(seeds=3), 2 * smoke_runs(seeds=1))


@pytest.mark.parametrize("source", ["import sys\nsys.exit(0)\n", "raise SystemExit\n",
                                    "class Stop(BaseException):\n    pass\n\n\nraise Stop('stopped')\n"])
def test_a_plugin_ending_the_process_at_import_is_an_error(tmp_path, plugin_dir, capsys, source):
    folder = plugin_dir({"quits.py": source})
    results = tmp_path / "results"
    code, _, err = cli(run_args(tiny(tmp_path), results), capsys)
    line = one_error_line(err)
    assert code == 2 and str(folder / "quits.py") in line and "failed to import" in line
    assert not results.exists()


def test_a_slow_plugin_import_is_named_once(tmp_path, plugin_dir, capsys, monkeypatch):
    from benchmark import discovery

    monkeypatch.setattr(discovery, "SLOW_IMPORT_S", 0.2)
    folder = plugin_dir({"slow.py": "import time\ntime.sleep(0.3)\n" + PLUGIN.format(name="slow")})
    args = run_args(tiny(tmp_path, method="slow"), tmp_path / "results", "--dry-run", "--no-estimate")
    code, _, err = cli(args, capsys)
    assert code == 0, err
    (note,) = [line for line in err.splitlines() if line.startswith("note: ")]
    assert str(folder / "slow.py") in note and re.search(r"took \d+\.\d s to import", note) and "worker" in note
    code, _, err = cli(args, capsys)
    assert code == 0 and "note: " not in err


def test_worker_processes_do_not_name_a_slow_plugin_again(tmp_path, plugin_dir):
    from benchmark import discovery

    seconds = discovery.SLOW_IMPORT_S + 0.2
    folder = plugin_dir({"slow.py": f"import time\ntime.sleep({seconds})\n" + PLUGIN.format(name="slow")})
    grid = tiny(tmp_path, method="slow")
    command = [sys.executable, "-m", "benchmark",
               *run_args(grid, tmp_path / "results", "--seeds", "0-1", "--workers", "2")]
    env = {k: v for k, v in os.environ.items() if k != discovery.REPORTER_ENV}
    done = subprocess.run(command, cwd=ROOT, env=dict(env, BENCHMARK_PLUGINS=str(folder)), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(records(tmp_path / "results")) == 2
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: method plugin")]
    assert len(notes) == 1 and str(folder / "slow.py") in notes[0], done.stderr
