"""What the report may claim (benchmark/report/stats.py, and the tables and figures built on it):
values a record marks invalid (its estimator's own check rejects them) are left out of means, tests,
rankings and figures and shown as invalid with their count; the headline family is called
confirmatory only when the plan records that the headline was first seen before any result. Records
and plans are written by the tests themselves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.report.build import build_report
from benchmark.report.exact import permutation_test
from benchmark.report.stats import Family, family_text
from benchmark.results.plan import Plan, PlannedRun
from benchmark.results.store import ResultStore
from fake_records import record, run_id, write_records

GRID = "valid"
SEEDS = range(5)
VAE, LR = ("vae", ()), ("lr-vae", (("alpha_T", 1.0), ("beta", 0.2)))
LOW, HIGH = ("beta-vae", (("beta", 0.5),)), ("beta-vae", (("beta", 2.0),))
SETTINGS = [VAE, LOW, HIGH, LR]
MI = {VAE: [6.0, 6.1, 5.9, 6.0, 6.0], LOW: [5.4, 5.5, 50.0, 5.5, 5.6], HIGH: [-3922.98] * 5, LR: [4.0] * 5}
AU = {VAE: 0.25, LOW: 0.5, HIGH: 0.0, LR: 1.0}
HEADLINE = ({"method": "lr-vae", "hyperparameters": {"alpha_T": 1.0, "beta": 0.2}},)
FIRST_SEEN = "2026-01-02T03:04:05+00:00"


def valid_record(setting: tuple, seed: int) -> dict:
    """A small ok record (no curves, vectors or images: a fast report) with this grid's numbers and
    the invalid values of the test: beta-vae beta=0.5 seed 2's MI (above its cap), every MI of
    beta=2 (far below 0), lr-vae seed 4's AU (not finite: stored as null), and vae seed 3's KL, a
    NaN in a record from before the `invalid` field (flagged by the fallback)."""
    method, hp = setting
    r = record(method, hp, seed)
    r["grid"] = GRID
    for key in ("vectors", "per_class", "noise", "artifacts", "curves"):
        r.pop(key, None)
    r["metrics"].update(au=AU[setting], au_count=int(AU[setting] * 4), kl=2.0 + 10 * AU[setting] + 0.1 * seed,
                        mi=MI[setting][seed])
    invalid = {}
    if setting == LOW and seed == 2:
        invalid["mi"] = "50 nats: above its cap log M = 6.21"
    if setting == HIGH:
        invalid["mi"] = "-3923 nats: below 0 by more than 3 standard errors (0.01)"
    if setting == LR and seed == 4:
        r["metrics"]["au"] = None
        invalid["au"] = "not finite"
    if setting == VAE and seed == 3:
        r["metrics"]["kl"] = float("nan")
    if invalid:
        r["invalid"] = invalid
    return r


def write_grid(root: Path, declared: dict | None) -> Path:
    """The records under ``root/valid`` and a plan declaring the lr-vae headline (``declared``: when
    the plan first saw it; None: a plan from before that was recorded)."""
    records = [valid_record(setting, seed) for setting in SETTINGS for seed in SEEDS]
    write_records(root / GRID / "runs", records)
    runs = tuple(PlannedRun.from_dict(dict(r, named=list(r["config"]["hyperparameters"])))
                 for r in records)
    ResultStore(root, GRID).write_plan(Plan(GRID, "validity", f"{GRID}.toml", runs, headline=HEADLINE,
                                            declared=declared))
    return root


def declared(results_before: int) -> dict:
    return {"sha256": "0" * 64, "first_seen": FIRST_SEEN, "results_before": results_before, "runs": 10}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("validity")
    results = write_grid(base / "results", declared(0))
    code, message = build_report(results, base / "reports")
    assert code == 0, message
    return {"results": results, "out": base / "reports" / GRID}


def row(table: str, *cells: str) -> list[str]:
    """The cells of the Markdown table row starting with ``cells``."""
    start = "| " + " | ".join(cells) + " |"
    found = [line for line in table.splitlines() if line.startswith(start)]
    assert len(found) == 1, (start, table)
    return [c.strip() for c in found[0].strip("|").split(" | ")]


def test_invalid_values_are_left_out_of_means_and_shown_with_their_count(built):
    table = (built["out"] / "tables" / "fashion-mnist.md").read_text()
    header = [c.strip() for c in table.splitlines()[0].strip("|").split(" | ")]
    mi, kl, au = header.index("MI ↑"), header.index("KL"), header.index("AU ↑")
    low = row(table, "beta-vae", "β=0.5")
    assert low[mi] == "5.50 ± 0.08 (1 of 5 invalid)"  # the mean of 5.4, 5.5, 5.5, 5.6: seed 2's 50.0 left out
    assert row(table, "beta-vae", "β=2")[mi] == "invalid (5 of 5)"
    # the best MI is the vae's 6.00, not beta=0.5, whose mean with its invalid 50.0 would be 14.4
    assert row(table, "vae")[mi] == "**6.00 ± 0.07**" and "**" not in low[mi]
    assert row(table, "vae")[kl].endswith("(1 of 5 invalid)")  # a NaN in a record without `invalid`
    lr = row(table, "lr-vae")
    assert lr[au] == "**4/4 (1 of 5 invalid)**" and lr[header.index("AU count per seed")] == "4 4 4 4 invalid"
    assert ("invalid: a value its estimator's own check rejects (docs/metrics.md); left out of means, tests and "
            "rankings.") in table
    tex = (built["out"] / "tables" / "fashion-mnist.tex").read_text()
    assert r"$5.50{\scriptstyle\,\pm0.08}$ (1 of 5 invalid)" in tex  # (LaTeX: no per-seed columns)

    csv = pd.read_csv(built["out"] / "tables" / "fashion-mnist.csv").set_index("setting")
    assert csv.loc["beta=0.5", "mi_mean"] == pytest.approx(5.5) and csv.loc["beta=0.5", "mi_n"] == 4
    assert csv.loc["beta=0.5", "mi_invalid"] == 1 and csv.loc["beta=2", "mi_invalid"] == 5
    assert pd.isna(csv.loc["beta=2", "mi_mean"]) and csv.loc["—", "mi_invalid"] == 0
    assert "mi" not in str(csv.loc["beta=0.5", "best"]).split() and "mi" in str(csv.loc["—", "best"]).split()
    seeds = pd.read_csv(built["out"] / "tables" / "per_seed.csv", keep_default_na=False)
    flagged = seeds[seeds["invalid"] != ""]
    assert sorted(zip(flagged["setting"], flagged["metric"])) == (
        [("alpha_T=1, beta=0.2", "au"), ("beta=0.5", "mi")] + [("beta=2", "mi")] * 5 + [("—", "kl")])


def test_tests_use_the_valid_values_only(built):
    table = pd.read_csv(built["out"] / "tables" / "vs_vae.csv")
    mi = table[(table["setting"] == "beta=0.5") & (table["metric"] == "mi")].iloc[0]
    valid, vae = [5.4, 5.5, 5.5, 5.6], MI[VAE]
    assert mi["n"] == 4 and json.loads(mi["values"]) == valid and mi["invalid"] == 1 and mi["invalid_vae"] == 0
    assert mi["p_exact"] == pytest.approx(permutation_test(valid, vae).p) and mi["p_min"] == pytest.approx(1 / 126)
    assert "1 invalid setting value left out (n = 4)" in mi["note"]
    high = table[(table["setting"] == "beta=2") & (table["metric"] == "mi")].iloc[0]
    assert high["n"] == 0 and pd.isna(high["p_exact"]) and "5 invalid setting values left out (n = 0)" in high["note"]
    au = table[(table["method"] == "lr-vae") & (table["metric"] == "au")].iloc[0]
    assert au["n"] == 4 and au["p_exact"] == pytest.approx(1 / 126) and au["in_family"]
    assert row((built["out"] / "tables" / "vs_vae.mi.fashion-mnist.md").read_text(), "fashion-mnist", "beta-vae",
               "β=0.5")[3] == (
        "4 (1 invalid) vs 5")


def test_figures_and_missing_section_name_the_invalid_values(built):
    page = (built["out"] / "fashion-mnist.md").read_text()
    assert "Not drawn: 1 AU value invalid" in page  # AU against beta: lr-vae seed 4
    readme = (built["out"].parent / "README.md").read_text()
    missing = readme.split("### What is missing", 1)[1]
    assert "**Invalid values** (8 in 8 ok runs)" in missing
    assert f"`{run_id(*LOW, 2)}`" in missing and "mi: 50 nats: above its cap log M = 6.21" in missing
    assert f"`{run_id(*VAE, 3)}`" in missing and "kl: not finite" in missing
    runs = (built["out"] / "runs.md").read_text()
    assert re.search(rf"{run_id(*LR, 4)}.*\| invalid \|", runs)


def test_runs_and_summary_csv_leave_invalid_values_out(built):
    store = ResultStore(built["results"], GRID)
    store.write_table()
    runs = pd.read_csv(store.dir / "runs.csv", keep_default_na=False).set_index("run_id")
    assert runs.loc[run_id(*LOW, 2), "invalid"] == "mi" and runs.loc[run_id(*LOW, 0), "invalid"] == ""
    assert runs.loc[run_id(*VAE, 3), "invalid"] == "kl" and runs.loc[run_id(*LR, 4), "invalid"] == "au"
    summary = pd.read_csv(store.dir / "summary.csv")
    by = {(r["method"], r["hp.beta"]): r for r in summary.fillna({"hp.beta": 1.0}).to_dict("records")}
    low, high, vae = by[("beta-vae", 0.5)], by[("beta-vae", 2.0)], by[("vae", 1.0)]
    assert low["mi_mean"] == pytest.approx(5.5)
    assert low["mi_std"] == pytest.approx(np.std([5.4, 5.5, 5.5, 5.6], ddof=1), abs=1e-6)
    assert low["mi_invalid"] == 1 and low["n"] == 5 and low["au_invalid"] == 0
    assert pd.isna(high["mi_mean"]) and high["mi_invalid"] == 5
    assert vae["kl_invalid"] == 1  # seed 3's NaN
    assert vae["kl_mean"] == pytest.approx(np.mean([2.0 + 2.5 + 0.1 * seed for seed in (0, 1, 2, 4)]))
    assert "(1 invalid)" in store.summary_markdown()


def report_text(out: Path) -> str:
    """Every Markdown and LaTeX file of a report."""
    return "\n".join(p.read_text() for p in sorted(out.rglob("*")) if p.suffix in (".md", ".tex"))


@pytest.mark.parametrize("case", ["preregistered", "after results", "not recorded"])
def test_confirmatory_only_when_the_headline_came_before_any_result(tmp_path, case):
    plan = {"preregistered": declared(0), "after results": declared(7), "not recorded": None}[case]
    results = write_grid(tmp_path / "results", plan)
    assert build_report(results, tmp_path / "out")[0] == 0
    text = report_text(tmp_path / "out").replace(str(tmp_path), "")  # (the folder is named after the test)
    family = pd.read_csv(tmp_path / "out" / GRID / "tables" / "vs_vae.csv")
    au = family[family["in_family"]].iloc[0]
    assert au["p_holm"] == pytest.approx(1 / 126)  # 4 (valid) vs 5 fully separated: Holm over m = 1
    holm_cell = row((tmp_path / "out" / GRID / "tables" / "vs_vae.au.md").read_text(), "fashion-mnist", "lr-vae")[7]
    others = re.sub("not confirmatory", "", text)
    if case == "preregistered":
        assert (f"declared before the first run of the grid (headline first seen {FIRST_SEEN}, before any result)"
                in text)
        assert "Confirmatory family (from the plan)" in text and au["significant"] and au["confirmatory"]
        assert holm_cell == "0.0079 *" and "not confirmatory" not in text
        return
    assert "confirmatory" not in others and "*" not in holm_cell and pd.isna(au["significant"])
    assert "Holm family (from the plan)" in text and "pre-registered" not in text and "before any result" not in text
    if case == "after results":
        assert f"chosen after 7 of 10 runs had results (headline first seen {FIRST_SEEN})" in text
        assert ("Holm-adjusted over the headline settings; not confirmatory: the headline was chosen after results "
                "existed") in text
    else:
        assert "when the headline was declared is not recorded" in text


@pytest.mark.parametrize("from_plan, reason", [
    (True, "Holm-adjusted over every planned setting; not confirmatory: the grid declares no headline"),
    (False, "not confirmatory: when the headline was declared is not recorded (no plan.json)"),
])
def test_a_family_without_a_declared_headline_is_not_confirmatory(from_plan, reason):
    text = family_text(Family(["x"], ("au",), declared=False, from_plan=from_plan))
    assert reason in text and "Confirmatory" not in text and "no p is marked significant" in text
