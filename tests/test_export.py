"""`export --to tensorboard|mlflow`: every record read back with the tracker's own reader
(TensorBoard's EventAccumulator, MLflow's MlflowClient on the file store), idempotent reruns,
and the one-line error when a tracker is not installed."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from commands import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def results(tmp_path) -> Path:
    """Two committed records of the quick grid with their PNG artifacts, and one of a second grid."""
    source = sorted((ROOT / "results" / "quick" / "runs").glob("*.json"))
    chosen = [p for p in source if json.loads(p.read_text()).get("artifacts")][:2]
    assert len(chosen) == 2
    out = tmp_path / "results"
    for grid, paths in (("quick", chosen), ("other", chosen[:1])):
        runs = out / grid / "runs"
        runs.mkdir(parents=True)
        for path in paths:
            shutil.copy(path, runs)
            for name in json.loads(path.read_text())["artifacts"].values():
                shutil.copy(path.parent / name, runs)
    return out


def records(results: Path) -> list[tuple[str, dict]]:
    return [(p.parent.parent.name, json.loads(p.read_text())) for p in sorted(results.glob("*/runs/*.json"))]


def test_tensorboard_export_reads_back(results, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = tmp_path / "tb"
    code, _, err = cli(["export", "--to", "tensorboard", str(results), "--out", str(out)], capsys)
    assert code == 0 and "3 records of 2 grid(s)" in err and "3 written" in err, err
    for grid, record in records(results):
        folder = out / grid / record["run_id"]
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
        events.Reload()
        loss = events.Scalars("curves/loss")
        assert [e.step for e in loss] == [c["epoch"] for c in record["curves"]]
        assert [e.value for e in loss] == pytest.approx([c["loss"] for c in record["curves"]], rel=1e-6)
        final = events.Scalars("metrics/au")
        assert len(final) == 1 and final[0].value == pytest.approx(record["metrics"]["au"], rel=1e-6)
        assert final[0].step == record["curves"][-1]["epoch"]
        images = events.Tags()["images"]
        assert sorted(images) == sorted(f"artifacts/{name}" for name in record["artifacts"])
        samples = events.Images("artifacts/samples")[0]
        assert samples.encoded_image_string == (results / grid / "runs" / record["artifacts"]["samples"]).read_bytes()
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        assert start.hparams["train.lr"].number_value == pytest.approx(record["config"]["train"]["lr"])
        assert start.hparams["method"].string_value == record["config"]["method"]
        assert start.hparams["model.options.hidden"].string_value == json.dumps(record["config"]["model"]["options"]["hidden"])

    # again: nothing rewritten; a changed record replaces its run's folder (still one event file)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, _, err = cli(["export", "--to", "tensorboard", str(results), "--out", str(out)], capsys)
    assert code == 0 and "0 written, 0 replaced (record changed), 3 unchanged" in err
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    grid, record = records(results)[0]
    path = results / grid / "runs" / f"{record['run_id']}.json"
    record["metrics"]["au"] = 0.5
    path.write_text(json.dumps(record))
    code, _, err = cli(["export", "--to", "tensorboard", str(results), "--out", str(out)], capsys)
    assert code == 0 and "0 written, 1 replaced (record changed), 2 unchanged" in err
    folder = out / grid / record["run_id"]
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(folder))
    events.Reload()
    assert [e.value for e in events.Scalars("metrics/au")] == [0.5]


def test_mlflow_export_reads_back(results, tmp_path, capsys, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    code, _, err = cli(["export", "--to", "mlflow", str(results), "--out", str(store)], capsys)
    assert code == 0 and "3 written" in err, err
    client = MlflowClient(tracking_uri=store.as_uri())

    def runs(grid: str):
        experiment = client.get_experiment_by_name(grid)
        return {r.data.tags["benchmark.run_id"]: r for r in client.search_runs([experiment.experiment_id])}

    for grid, record in records(results):
        run = runs(grid)[record["run_id"]]
        assert run.info.status == "FINISHED" and run.info.run_name == record["label"]
        assert run.data.params["train.lr"] == str(record["config"]["train"]["lr"])
        assert run.data.params["dataset.name"] == record["config"]["dataset"]["name"]
        assert run.data.metrics["au"] == pytest.approx(record["metrics"]["au"])
        history = client.get_metric_history(run.info.run_id, "loss")
        history = sorted((m.step, m.value) for m in history)
        assert [step for step, _ in history] == [c["epoch"] for c in record["curves"]]
        assert [value for _, value in history] == pytest.approx([c["loss"] for c in record["curves"]])
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "artifacts")}
        assert artifacts == {f"artifacts/{name}" for name in record["artifacts"].values()}
        assert f"{record['run_id']}.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert len(runs("quick")) == 2 and len(runs("other")) == 1

    # again: unchanged runs are kept as they are; a changed record replaces its run (one active run per id)
    before = {k: r.info.run_id for k, r in runs("quick").items()}
    code, _, err = cli(["export", "--to", "mlflow", str(results), "--out", str(store)], capsys)
    assert code == 0 and "0 written, 0 replaced (record changed), 3 unchanged" in err
    assert {k: r.info.run_id for k, r in runs("quick").items()} == before
    grid, record = next(item for item in records(results) if item[0] == "quick")
    record["metrics"]["au"] = 0.5
    (results / grid / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    code, _, err = cli(["export", "--to", "mlflow", str(results), "--out", str(store)], capsys)
    assert code == 0 and "1 replaced" in err
    after = runs("quick")
    assert len(after) == 2 and after[record["run_id"]].info.run_id != before[record["run_id"]]
    assert after[record["run_id"]].data.metrics["au"] == 0.5


@pytest.mark.parametrize("tracker, module, package", [("tensorboard", "torch.utils.tensorboard", "tensorboard"),
                                                      ("mlflow", "mlflow", "mlflow-skinny")])
def test_a_missing_tracker_is_a_one_line_error(results, tmp_path, capsys, monkeypatch, tracker, module, package):
    for name in [module, *(m for m in list(sys.modules) if m.startswith(module + "."))]:
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    code, _, err = cli(["export", "--to", tracker, str(results), "--out", str(tmp_path / "out")], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and f"pip install {package}" in lines[0], err


def test_no_records_is_a_one_line_error(tmp_path, capsys):
    code, _, err = cli(["export", "--to", "tensorboard", str(tmp_path)], capsys)
    assert code == 2 and err.startswith("error: no run records under") and len(err.splitlines()) == 1
    code, _, err = cli(["export", "--to", "tensorboard", str(tmp_path / "nope")], capsys)
    assert code == 2 and "does not exist" in err
