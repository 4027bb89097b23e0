"""The grid's pre-registered headline (`headline = {...}`): validated when the grid is loaded,
written into plan.json, read back by the report (never chosen by a metric)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.errors import GridError
from benchmark.planning.grid import load_grid
from benchmark.results.plan import Plan, PlannedRun
from benchmark.planning.prepare import prepare

BODY = """
seeds = [0, 1]
[[datasets]]
name = "pinwheel"
[[methods]]
name = "vae"
[[methods]]
name = "lr-vae"
alpha_T = [0.4, 1.0]
beta = [0.2, 1.0]
"""


def grid_file(tmp_path: Path, headline: str) -> Path:
    path = tmp_path / "g.toml"
    path.write_text(headline + "\n" + BODY)
    return path


@pytest.mark.parametrize("headline", [
    'headline = {"lr-vae" = {alpha_T = 1.0, beta = 0.2}}',
    'headline = {"lr-vae" = [{alpha_T = 1, beta = 0.2}]}',
    'headline = [{method = "lr-vae", alpha_T = 1.0, beta = 0.2}]',
])
def test_headline_forms(tmp_path, headline):
    grid = load_grid(grid_file(tmp_path, headline))
    assert grid.headline() == ({"method": "lr-vae", "hyperparameters": {"alpha_T": 1.0, "beta": 0.2}},)


def test_no_headline_is_empty(tmp_path):
    assert load_grid(grid_file(tmp_path, "")).headline() == ()


@pytest.mark.parametrize("headline, field, message", [
    ('headline = {"beta-vae" = {beta = 0.2}}', "headline.beta-vae", "not in this grid"),
    ('headline = {"lr-vae" = {gamma = 1.0}}', "headline.lr-vae.gamma", "no hyperparameter 'gamma'"),
    ('headline = {"lr-vae" = {alpha_T = 2.0}}', "headline.lr-vae", "no run of lr-vae in this grid has"),
    ('headline = {"lr-vae" = {beta = "x"}}', "headline.lr-vae", "no run of lr-vae in this grid has"),
    ('headline = {"lr-vae" = 3}', "headline.lr-vae", "expected a table"),
    ('headline = [{alpha_T = 1.0}]', "headline[0]", "`method"),
    ('headline = 1', "headline", "expected a table"),
])
def test_bad_headline_is_a_grid_error_naming_the_field(tmp_path, headline, field, message):
    with pytest.raises(GridError) as error:
        load_grid(grid_file(tmp_path, headline))
    assert f"field `{field}`" in str(error.value) and message in str(error.value)


def test_named_grids_declare_their_headline():
    for name in ("quick", "paper-fmnist", "quick-lid-init"):
        assert load_grid(name).headline(), name


def test_the_plan_carries_the_headline(tmp_path):
    path = grid_file(tmp_path, 'headline = {"lr-vae" = {alpha_T = 1.0, beta = 0.2}}')
    plan = prepare(str(path), str(tmp_path / "results")).plan
    expected = ({"method": "lr-vae", "hyperparameters": {"alpha_T": 1.0, "beta": 0.2}},)
    assert plan is not None and plan.headline == expected
    assert Plan.from_json(plan.to_json()) == plan
    # a plan without a headline keeps the file as before (no key)
    bare = Plan("g", "", "g.toml", tuple(PlannedRun(r.run_id, r.label, r.named, r.config) for r in plan.runs))
    assert "headline" not in bare.to_json() and Plan.from_json(bare.to_json()).headline == ()


def test_the_plan_records_whether_the_headline_came_before_any_result(tmp_path):
    from benchmark.cli import main

    path = grid_file(tmp_path, 'headline = {"lr-vae" = {alpha_T = 1.0, beta = 0.2}}')
    path.write_text(path.read_text().replace("seeds = [0, 1]", "seeds = [0]\n[train]\nepochs = 1\n[eval]\n"
                                             "nll_samples = 0\ngeometry_points = 0\nnoise_points = 0"))
    results = tmp_path / "results"
    run = ["run", "--grid", str(path), "--results", str(results), "--device", "cpu", "--methods", "vae"]
    assert main(run) == 0
    store_plan = results / "g" / "plan.json"
    first = Plan.from_json(store_plan.read_text())
    assert first.declared["results_before"] == 0 and first.declared["runs"] == 5 and first.preregistered
    assert main(run) == 0  # the same headline keeps its declaration
    assert Plan.from_json(store_plan.read_text()).declared == first.declared
    path.write_text(path.read_text().replace("alpha_T = 1.0, beta = 0.2", "alpha_T = 0.4, beta = 1.0"))
    assert main(run) == 0  # a headline changed after a result: not pre-registered, and the plan says so
    changed = Plan.from_json(store_plan.read_text())
    assert changed.declared["results_before"] == 1 and not changed.preregistered
    assert changed.declared["sha256"] != first.declared["sha256"]
