"""The typed record, the plan and the configs round-trip through their JSON; `run` writes the plan."""

from __future__ import annotations

import json

import pytest

from benchmark.cli import main
from benchmark.config import DatasetConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig
from benchmark.discovery import METHODS
from conftest import smoke_runs
from benchmark.planning.grid import load_grid
from benchmark.results.plan import Plan, PlannedRun
from benchmark.results.record import RECORD_VERSION, Record, parse_record
from benchmark.results.store import ResultStore
from test_report import AU, DIVERGED, FAILED, OLD, record


@pytest.mark.parametrize("grid", ["quick", "smoke"])
def test_configs_round_trip(grid):
    for run in load_grid(grid).expand():
        again = RunConfig.from_dict(json.loads(json.dumps(run.to_dict())))
        assert again == run and again.run_id == run.run_id and again.label() == run.label()
        for section, cls in ((run.dataset, DatasetConfig), (run.model, ModelConfig), (run.train, TrainConfig),
                             (run.eval, EvalConfig)):
            assert cls.from_dict(section.to_dict()) == section


@pytest.mark.parametrize("key", [next(iter(AU)), OLD, FAILED, DIVERGED])
def test_record_json_round_trips_byte_for_byte(key):
    status = "failed" if key == FAILED else "diverged" if key == DIVERGED else "ok"
    data = record(*key, status=status)  # record_version 1, without `code`: an old record still loads
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    parsed = parse_record(text)
    assert parsed.record_version == 1 and parsed.code is None and parsed.status == status
    assert parsed.to_json() == text


def test_unknown_keys_are_kept_and_non_finite_floats_become_null():
    data = dict(record(*next(iter(AU))), future_field={"a": 1})
    data["metrics"]["geo_bilipschitz"] = float("inf")
    parsed = Record.from_dict(data)
    assert parsed.extra == {"future_field": {"a": 1}}
    written = json.loads(parsed.to_json())
    assert written["future_field"] == {"a": 1} and written["metrics"]["geo_bilipschitz"] is None


def test_what_the_tables_need_is_checked():
    data = record(*next(iter(AU)))
    with pytest.raises(KeyError, match="config"):
        Record.from_dict({k: v for k, v in data.items() if k != "config"})
    with pytest.raises(TypeError):
        Record.from_dict(dict(data, config=None))
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_record("[1, 2]")


def test_a_new_record_names_its_code_and_version():
    run = load_grid("smoke").expand(methods=["vae"], datasets=["pinwheel"])[0]
    started = Record.start(run, {"key": "k"})
    assert started.record_version == RECORD_VERSION and started.status == "running"
    assert started.run_id == run.run_id and started.config == run.to_dict() and set(started.seeds) >= {"init", "eval"}
    keys = set(json.loads(started.to_json()))
    assert {"error", "diverged_epoch", "metrics", "curves", "code", "started_at"} <= keys
    assert not keys & {"per_class", "noise", "wall_time_s", "artifacts"}  # only once known


def test_plan_round_trips():
    grid = load_grid("quick")
    plan = Plan(grid.name, grid.description, grid.source,
                tuple(PlannedRun.of(run.config, run.named) for run in grid.runs()))
    assert Plan.from_json(plan.to_json()) == plan
    assert [r.run_id for r in plan.runs] == [r.run_id for r in grid.expand()]
    assert plan.named_hyperparameters() == {"vae": set(), "beta-vae": {"beta"}, "lr-vae": {"alpha_T", "beta"},
                                            "lid-vae": set(), "il-lid-vae": {"L"}}


def test_run_writes_the_whole_plan_and_a_dry_run_writes_nothing(tmp_path, fake_fashion_root, capsys):
    args = ["run", "--grid", "smoke", "--results", str(tmp_path), "--data-root", str(fake_fashion_root),
            "--device", "cpu", "--datasets", "pinwheel", "--methods", "vae"]
    assert main(args + ["--dry-run", "--no-estimate"]) == 0 and not (tmp_path / "smoke").exists()
    assert main(args) == 0
    store = ResultStore(tmp_path, "smoke")
    plan = store.read_plan()
    assert plan is not None and plan.grid == "smoke" and plan.source == "benchmark/grids/smoke.toml"
    # every run of the grid, not only the ones this command ran
    assert [r.run_id for r in plan.runs] == [r.run_id for r in load_grid("smoke").expand()]
    assert len(plan.runs) == smoke_runs()
    (done,) = store.records()
    assert done.run_id in {r.run_id for r in plan.runs} and done.grid == "smoke" and done.attempt == 1
    planned = next(r for r in plan.runs if r.run_id == done.run_id)
    assert planned.config == done.config and planned.label == done.label
    capsys.readouterr()

    assert main(["report", "--results", str(tmp_path), "--out", str(tmp_path / "reports")]) == 0
    missing = (tmp_path / "reports" / "README.md").read_text().split("### What is missing", 1)[1]
    assert "fashion-mnist · vae (defaults) · seeds 0: not run yet" in missing
    assert "pinwheel · vae" not in missing and "pinwheel · beta-vae (defaults) · seeds 0: not run yet" in missing


def test_force_and_keep_stale_are_part_of_the_job(tmp_path):
    from benchmark.planning.prepare import prepare

    prepared = prepare("smoke", str(tmp_path), methods=["vae"], force=True)
    assert prepared.job.force and len(prepared.job.todo) == len(prepared.job.runs) == 3
    assert set(prepared.states.values()) == {"todo"} and "3 runs, 0 already done (skipped), 3 to run" in prepared.header()
    assert len(prepared.plan.runs) == smoke_runs()  # the plan holds the whole grid
