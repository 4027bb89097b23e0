"""Scale-out and faults: parallel executors agree with the sequential one, runs resume from
checkpoints, failures are recorded and retried, and a SIGKILLed grid completes on restart."""

from __future__ import annotations

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

from benchmark.cli import main
from benchmark.config import RunConfig
from benchmark.planning.grid import load_grid
from benchmark.execution.runner import execute_pack
from conftest import DEVICES

ROOT = Path(__file__).resolve().parents[2]
SCALARS = ("au", "au_count", "kl", "mi", "rec", "neg_elbo", "mse", "nll")

TINY = '''
seeds = [0, 1]
[train]
epochs = {epochs}
batch_size = 64
[model]
hidden = [32]
latent_dim = 2
[eval]
nll_samples = 10
nll_examples = 32
geometry_points = 4
noise_points = 4
mi_curve_every = 0
[[datasets]]
name = "pinwheel"
train_size = {train_size}
test_size = 128
[[methods]]
name = "vae"
[[methods]]
name = "beta-vae"
beta = 0.5
'''


def tiny_grid(tmp_path: Path, epochs: int = 2, train_size: int = 256, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY.format(epochs=epochs, train_size=train_size))
    return path


def records(results: Path, grid: str = "tiny") -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / grid / "runs").glob("*.json"))}


def assert_same_metrics(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert a.keys() == b.keys() and a
    for run_id in a:
        assert a[run_id]["status"] == b[run_id]["status"] == "ok"
        for key in SCALARS:
            assert a[run_id]["metrics"][key] == pytest.approx(b[run_id]["metrics"][key], rel=1e-5, abs=1e-6), key


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("device", DEVICES)
def test_local_workers_match_sequential(tmp_path, capsys, device):
    grid = str(tiny_grid(tmp_path))
    assert run_cli(["run", "--grid", grid, "--results", str(tmp_path / "seq"), "--device", device], capsys)[0] == 0
    parallel = ["--workers", "2"] if device == "cpu" else ["--runs-per-gpu", "2"]  # 2 runs packed on one GPU
    code, err = run_cli(["run", "--grid", grid, "--results", str(tmp_path / "par"), "--device", device, *parallel],
                        capsys)
    assert code == 0, err
    par = records(tmp_path / "par")
    if device == "cpu":
        shared = max(1, (os.cpu_count() or 1) // 2)  # the cores shared by the 2 workers
        assert all(r["device"] == f"cpu ({shared} threads)" for r in par.values())
    else:
        assert all(r["device"].startswith("cuda:0") for r in par.values())  # pinned to the GPU's slots
    assert_same_metrics(records(tmp_path / "seq"), par)


def test_ray_executor_matches_sequential(tmp_path, capsys):
    pytest.importorskip("ray")
    grid = str(tiny_grid(tmp_path))
    assert run_cli(["run", "--grid", grid, "--results", str(tmp_path / "seq"), "--device", "cpu"], capsys)[0] == 0
    code, err = run_cli(["run", "--grid", grid, "--results", str(tmp_path / "ray"), "--device", "cpu",
                         "--executor", "ray", "--workers", "2"], capsys)
    assert code == 0, err
    assert_same_metrics(records(tmp_path / "seq"), records(tmp_path / "ray"))


@pytest.mark.parametrize("device", DEVICES)
def test_interrupted_run_resumes_from_checkpoint_and_matches(tmp_path, monkeypatch, device):
    from benchmark.execution import runner

    config: RunConfig = load_grid(tiny_grid(tmp_path, epochs=4)).expand(methods=["vae"], seeds=[0])[0]
    plain = execute_pack([config], device=device, log=lambda _: None)[0].record.to_dict()

    checkpoint = tmp_path / "ckpt.pt"
    real_run_epoch, calls = runner.Trainer.run_epoch, []

    def dies_in_third_epoch(self):
        calls.append(self.epoch)
        if self.epoch == 2:
            raise KeyboardInterrupt  # stands in for a kill: no record, the checkpoint stays
        return real_run_epoch(self)

    monkeypatch.setattr(runner.Trainer, "run_epoch", dies_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        execute_pack([config], device=device, log=lambda _: None, checkpoint=checkpoint, checkpoint_every=1)[0]
    assert checkpoint.exists() and calls == [0, 1, 2]
    monkeypatch.setattr(runner.Trainer, "run_epoch", real_run_epoch)

    lines: list[str] = []
    resumed = execute_pack([config], device=device, log=lines.append, checkpoint=checkpoint, checkpoint_every=1)[0].record.to_dict()
    assert any("resumed from" in line and "after epoch 2" in line for line in lines)
    assert len(resumed["curves"]) == len(plain["curves"]) == 4
    if device == "cpu":  # bit for bit
        assert resumed["metrics"] == plain["metrics"] and resumed["curves"] == plain["curves"]
    else:  # GPU kernels may sum in another order from one process to the next
        assert_same_metrics({"run": resumed}, {"run": plain})

    other = load_grid(tiny_grid(tmp_path, epochs=4)).expand(methods=["vae"], seeds=[1])[0]
    failed = execute_pack([other], device=device, log=lambda _: None, checkpoint=checkpoint, checkpoint_every=1)[0].record.to_dict()
    assert failed["status"] == "failed" and "belongs to run" in failed["error"]["message"]


FLAKY = '''
from pathlib import Path
from benchmark.plugin import Method, register_method

MARKER = Path({marker!r})

@register_method
class Flaky(Method):
    """Fails its first attempt (a marker file remembers), then trains like the VAE."""
    name = "flaky"
    def loss(self, x, progress):
        if not MARKER.exists():
            MARKER.write_text("failed once")
            raise RuntimeError("transient failure")
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {{"loss": rec + kl, "rec": rec, "kl": kl}}

@register_method
class Dying(Method):
    """Kills its own worker process."""
    name = "dying"
    def loss(self, x, progress):
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
'''


def test_failed_run_is_retried(tmp_path, plugin_dir, capsys):
    plugin_dir({"flaky.py": FLAKY.format(marker=str(tmp_path / "marker"))})
    code, err = run_cli(["run", "--grid", "smoke", "--datasets", "pinwheel", "--methods", "flaky",
                         "--results", str(tmp_path / "r"), "--device", "cpu"], capsys)
    assert code == 0, err
    (record,) = records(tmp_path / "r", "smoke").values()
    assert record["status"] == "ok" and record["attempt"] == 2 and "retrying" in err

    (tmp_path / "marker").unlink()
    code, err = run_cli(["run", "--grid", "smoke", "--datasets", "pinwheel", "--methods", "flaky", "--force",
                         "--retries", "0", "--results", str(tmp_path / "r"), "--device", "cpu"], capsys)
    (record,) = records(tmp_path / "r", "smoke").values()
    assert code == 1 and record["status"] == "failed" and record["attempt"] == 1


def test_dead_worker_fails_only_its_run(tmp_path, plugin_dir, capsys):
    plugin_dir({"flaky.py": FLAKY.format(marker=str(tmp_path / "marker"))})
    code, err = run_cli(["run", "--grid", "smoke", "--datasets", "pinwheel", "--methods", "dying,vae,beta-vae",
                         "--results", str(tmp_path / "r"), "--device", "cpu", "--workers", "2"], capsys)
    assert code == 1
    by_method = {r["config"]["method"]: r for r in records(tmp_path / "r", "smoke").values()}
    assert by_method["dying"]["status"] == "failed" and "worker lost" in by_method["dying"]["error"]["message"]
    assert by_method["dying"]["attempt"] == 2  # retried once
    assert by_method["vae"]["status"] == by_method["beta-vae"]["status"] == "ok"


def _start(grid: Path, results: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "benchmark", "run", "--grid", str(grid), "--results", str(results),
                             "--device", "cpu", "--checkpoint-every", "1", *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_sigkill_and_restart_completes_without_recomputing(tmp_path):
    grid = tiny_grid(tmp_path, epochs=40, train_size=2000)
    results = tmp_path / "results"
    runs_dir, checkpoints = results / "tiny" / "runs", results / "tiny" / "checkpoints"
    process = _start(grid, results)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # kill once one run is done and the next has a checkpoint
        if list(runs_dir.glob("*.json")) and checkpoints.exists() and list(checkpoints.glob("*.pt")):
            break
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.2)
    else:
        pytest.fail("the grid made no progress")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    before = {p.name: p.stat().st_mtime_ns for p in runs_dir.glob("*.json")}
    for path in runs_dir.glob("*.json"):
        assert json.loads(path.read_text())["status"] == "ok"  # no truncated record
    assert len(pd.read_csv(results / "tiny" / "runs.csv")) == len(before)

    restart = _start(grid, results)
    out, _ = restart.communicate(timeout=600)
    assert restart.returncode == 0, out
    assert f"{len(before)} already done (skipped)" in out and "resumed from" in out
    recs = records(results)
    assert len(recs) == 4 and all(r["status"] == "ok" and len(r["curves"]) == 40 for r in recs.values())
    assert {p: t for p, t in before.items()} == {p.name: p.stat().st_mtime_ns for p in runs_dir.glob("*.json") if p.name in before}
    assert sorted(pd.read_csv(results / "tiny" / "runs.csv")["run_id"]) == sorted(recs)
    assert not list(checkpoints.glob("*")) and not list(runs_dir.glob(".*"))


def test_two_commands_at_once_never_run_the_same_run_twice(tmp_path):
    grid = tiny_grid(tmp_path, epochs=10, train_size=1000)
    results = tmp_path / "results"
    first, second = _start(grid, results), _start(grid, results)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    finished = [line.split()[2] for out in outputs for line in out.splitlines() if line.startswith("[") and " ok " in line]
    recs = records(results)
    assert len(recs) == 4 and sorted(finished) == sorted(recs)  # each run done exactly once
    for out in outputs:  # each command's summary adds up: its runs, the skipped ones and the other's
        total, counts, skipped, *elsewhere = re.search(
            r"(\d+) runs: (.*); (\d+) skipped \(already ok\)(?:, (\d+) being run by another process)?"
            r"(?:, (\d+) finished by another process)?", out).groups()
        ours = sum(int(n) for n in re.findall(r"(\d+) \w", counts))
        assert ours + int(skipped) + sum(int(n or 0) for n in elsewhere) == int(total) == 4, out
    assert sorted(pd.read_csv(results / "tiny" / "runs.csv")["run_id"]) == sorted(recs)


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_packs_in_worker_processes_match_packs_in_process(tmp_path, capsys, executor):
    if executor == "ray":
        pytest.importorskip("ray")
    grid = str(tiny_grid(tmp_path))  # vae and beta-vae, 2 seeds each: two packs of 2
    code, err = run_cli(["run", "--grid", grid, "--results", str(tmp_path / "in"), "--device", "cpu", "--pack", "2"],
                        capsys)
    assert code == 0, err
    code, err = run_cli(["run", "--grid", grid, "--results", str(tmp_path / "out"), "--device", "cpu", "--pack", "2",
                         "--workers", "2", "--executor", executor], capsys)
    assert code == 0, err
    inside, outside = records(tmp_path / "in"), records(tmp_path / "out")
    assert all(r["pack"]["size"] == 2 for r in outside.values())
    assert {r["pack"]["index"] for r in outside.values()} == {0, 1}
    assert_same_metrics(inside, outside)


def test_sigterm_cancels_the_ray_tasks_on_a_cluster(tmp_path, capsys, monkeypatch):
    """With --address, the cluster outlives the command: SIGTERM (Ctrl-C) cancels the tasks in
    flight, by force those that do not stop, and says so in one line. The cluster is a Ray
    instance of this process (the command connects to it), the tasks sleepers."""
    ray = pytest.importorskip("ray")
    import threading

    from benchmark.execution import executor

    marks = tmp_path / "marks"
    marks.mkdir()

    def sleeper(configs, options, slot, checkpoint):  # pickled by value: runs on the cluster's workers
        import os as os_, time as time_
        seed = configs[0].seed
        try:  # (the pid inside: a cancel arriving right after it is written must be caught below)
            (marks / f"{seed}.pid").write_text(str(os_.getpid()))
            for _ in range(3000):  # Python between short calls, as training is
                time_.sleep(0.1)
        except KeyboardInterrupt:
            (marks / f"{seed}.interrupted").write_text("")
            if seed == 1:  # one that ignores the polite cancel: its worker process is killed
                for _ in range(3000):
                    try:
                        time_.sleep(0.1)
                    except KeyboardInterrupt:
                        pass
            raise
        (marks / f"{seed}.finished").write_text("")

    monkeypatch.setattr(executor, "_run_in_worker", sleeper)
    monkeypatch.setattr(executor, "RAY_CANCEL_GRACE_S", 8.0)
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        def terminate_once_both_run() -> None:
            deadline = time.monotonic() + 180  # Ray's workers start slowly on a loaded machine
            while len(list(marks.glob("*.pid"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=terminate_once_both_run, daemon=True).start()
        code, err = run_cli(["run", "--grid", str(tiny_grid(tmp_path)), "--results", str(tmp_path / "results"),
                             "--device", "cpu", "--methods", "vae", "--executor", "ray", "--address", "auto",
                             "--workers", "2"], capsys)
        assert code == 130, err
        (line,) = [line for line in err.splitlines() if "Ray task" in line]
        # the task that ignores the polite cancel is killed; on a loaded machine the other may be too slow to stop
        match = re.fullmatch(r"cancelled 2 Ray task\(s\) still running on the cluster at auto; ([12]) not stopped "
                             r"within 8 s had their worker processes killed", line)
        assert match, err
        if match.group(1) == "1":  # the polite cancel reached both in time (it may not, on a loaded machine)
            assert (marks / "0.interrupted").exists() and (marks / "1.interrupted").exists()
        deadline = time.monotonic() + 30
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) == 2  # nothing runs on the cluster any more
        killed = int((marks / "1.pid").read_text())
        while Path(f"/proc/{killed}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{killed}").exists() or "Z" in Path(f"/proc/{killed}/stat").read_text().split()[2]
        assert not list(marks.glob("*.finished")) and not records(tmp_path / "results")
    finally:
        ray.shutdown()
