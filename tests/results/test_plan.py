"""A grid's plan (benchmark/results/plan.py): it round-trips through its JSON, and `run` writes the
whole grid's plan beside the records (a dry run writes nothing), from which the report says what
is missing."""

from __future__ import annotations

from benchmark.cli import main
from benchmark.planning.grid import load_grid
from benchmark.results.plan import Plan, PlannedRun
from benchmark.results.store import ResultStore

from conftest import smoke_runs


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
