"""Loading a grid's results for the report (benchmark/report/load.py): an MI at its cap log N
(within the margin the records give, else the config's default) is marked "(at cap)" and never
bolded or ranked; figure labels leave out what every drawn setting shares. (MI at its cap in the
records: tests/evaluation/test_evaluate.py.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from benchmark import config as config_module
from benchmark.report import load
from benchmark.report.build import build_report as write_report
from fake_records import GRID, record


# --- MI at its cap log N ----------------------------------------------------------------------

CAP = math.log(500)  # the records of fake_records.record hold 500 test examples
SETTINGS = {"vae": ("vae", ()), "beta=0.1": ("beta-vae", (("beta", 0.1),)), "beta=4": ("beta-vae", (("beta", 4.0),))}


def write_mi_results(root: Path, mi: dict[str, list[float]], estimators: dict | None) -> Path:
    """The records of fake_records.record, one seed per MI value, with the given MI per seed and MI estimators."""
    runs = root / GRID / "runs"
    runs.mkdir(parents=True)
    for name, values in mi.items():
        method, hp = SETTINGS[name]
        for seed, value in enumerate(values):
            r = record(method, hp, seed)
            r["metrics"]["mi"] = value
            r["estimators"].update(estimators or {})
            for point in r["curves"]:  # MI at every epoch: the curves figure draws an MI panel from 3 points
                point["test_mi"] = value
            (runs / f"{r['run_id']}.json").write_text(json.dumps(r, indent=1, sort_keys=True))
    return root


def build_report(tmp_path: Path, monkeypatch, mi: dict[str, list[float]], estimators: dict | None) -> Path:
    results = write_mi_results(tmp_path / "results", mi, estimators)
    code, message = write_report(results, tmp_path / "reports")
    assert code == 0, message
    return tmp_path / "reports"


def mi_cells(markdown: str) -> dict[str, str]:
    """``method setting`` -> MI cell of a full table in Markdown."""
    lines = [line.split(" | ") for line in markdown.splitlines() if line.startswith("| ")]
    column = lines[0].index("MI ↑")
    return {f"{cells[0][2:]} {cells[1]}": cells[column] for cells in lines[1:]}


def test_report_marks_mi_at_cap_and_bolds_none(tmp_path, monkeypatch):
    # vae and beta=0.1 have their means within 0.25 of log 500 = 6.21; beta=4 has one seed at cap
    # (6.10) but its mean (3.10) is not
    mi = {"vae": [6.20, 6.10], "beta=0.1": [6.21, 6.00], "beta=4": [6.10, 0.10]}
    out = build_report(tmp_path, monkeypatch, mi, {"mi_cap": CAP, "mi_cap_margin": 0.25, "mi_mixture_size": 500})
    tables = out / GRID / "tables"
    cells = mi_cells((tables / "fashion-mnist.md").read_text())
    assert cells == {"vae —": "6.15 ± 0.07 (at cap)", "beta-vae β=0.1": "6.11 ± 0.15 (at cap)",
                     "beta-vae β=4": "3.10 ± 4.24"}
    full = pd.read_csv(tables / "fashion-mnist.csv")
    assert list(full["mi_at_cap"]) == [True, True, False]
    assert full["mi_cap"].tolist() == pytest.approx([CAP] * 3)
    assert not any("mi" in str(best).split() for best in full["best"])
    headline = (tables / "headline.md").read_text()
    assert "(at cap)" in headline and "**6." not in headline
    tex = (tables / "fashion-mnist.tex").read_text()
    assert r"$6.15{\scriptstyle\,\pm0.07}$\textsuperscript{cap}" in tex and r"\mathbf{6." not in tex
    page = (out / GRID / "fashion-mnist.md").read_text()
    assert "never KL, an MI at its cap," in page  # the bold rule beside the table says why none is bold
    assert "MI is at most its cap log N" in page and "log 500 = 6.21 nats" in page
    assert "within 0.25 nats of the cap" in page
    assert "MI is at most its cap log N" in (tables / "headline.md").read_text()  # the standalone table too
    assert "dashed: the MI cap log N" in page  # the curves figure draws it

    again = tmp_path / "again"  # deterministic: the same records give the same bytes
    assert write_report(tmp_path / "results", again)[0] == 0
    first = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    second = {p.relative_to(again): p.read_bytes() for p in sorted(again.rglob("*")) if p.is_file()}
    assert first == second


def test_report_bolds_the_highest_mi_below_cap(tmp_path, monkeypatch):
    # old records: a cap without a margin (the default 0.25 applies), no mixture size; 5 seeds
    # each, so the exact test of the best against the runner-up can reach p = 2/252 <= 0.05
    spread = [-0.1, -0.05, 0.0, 0.05, 0.1]
    mi = {name: [mean + d for d in spread] for name, mean in [("vae", 3.1), ("beta=0.1", 5.9), ("beta=4", 1.1)]}
    out = build_report(tmp_path, monkeypatch, mi, {"mi_cap": CAP})  # 5.90 < 6.21 - 0.25
    cells = mi_cells((out / GRID / "tables" / "fashion-mnist.md").read_text())
    assert cells == {"vae —": "3.10 ± 0.08", "beta-vae β=0.1": "**5.90 ± 0.08**",
                     "beta-vae β=4": "1.10 ± 0.08"}
    assert "within 0.25 nats of the cap" in (out / GRID / "fashion-mnist.md").read_text()


def test_report_without_a_cap_flags_nothing(tmp_path, monkeypatch):
    mi = {"vae": [9.0] * 5, "beta=0.1": [5.0] * 5}  # above log 500, but no cap is recorded
    out = build_report(tmp_path, monkeypatch, mi, None)
    cells = mi_cells((out / GRID / "tables" / "fashion-mnist.md").read_text())
    assert cells == {"vae —": "**9.00 ± 0.00**", "beta-vae —": "5.00 ± 0.00"}
    assert "not recorded, so nothing is flagged" in (out / "README.md").read_text()


def test_report_default_margin_is_the_config_default():
    assert load.MI_CAP_MARGIN == config_module.MI_CAP_MARGIN


# --- figure labels ------------------------------------------------------------------------------

def test_figure_labels_leave_out_what_every_drawn_setting_shares():
    """The plan holds two architectures but only one has records: figure legends drop it, tables keep it."""
    from benchmark.report.load import Setting, relabel

    parts = [[("hp.beta", "beta=0.1"), ("model.arch", "arch=mlp-shallow")],
             [("hp.beta", "beta=4"), ("model.arch", "arch=mlp-shallow")]]
    settings = [Setting(str(i), "d", "beta-vae", {}, parts=p, label=", ".join(t for _, t in p))
                for i, p in enumerate(parts)]
    short = relabel(settings)
    assert [short[s.key].label for s in settings] == ["beta=0.1", "beta=4"]
    assert settings[0].label == "beta=0.1, arch=mlp-shallow"  # the originals are unchanged
    deep = Setting("2", "d", "vae", {}, parts=[("model.arch", "arch=mlp-deep")], label="arch=mlp-deep")
    assert relabel([*settings, deep])["0"].label == "beta=0.1, arch=mlp-shallow"


def test_a_setting_written_out_by_newer_records_only_is_not_a_column(tmp_path):
    """Records written before `train.precision` existed lack it (read as its default, fp32); a rerun
    writes it out. One grid holding both has one setting per method and no `precision=` label,
    while a precision nobody's default is (bf16) is still told apart."""
    from benchmark.report.load import load_grid_records
    from fake_records import write_records

    def vae(seed: int, precision: str | None) -> dict:
        r = record("vae", (), seed)
        if precision is not None:
            r["config"]["train"]["precision"] = precision
        return r

    runs = tmp_path / GRID / "runs"
    write_records(runs, [vae(0, None), vae(1, "fp32")])
    settings = load_grid_records(tmp_path / GRID).settings
    assert [(s.label, len(s.runs)) for s in settings] == [("—", 2)]
    write_records(runs, [vae(2, "bf16")])
    labels = sorted(s.label for s in load_grid_records(tmp_path / GRID).settings)
    assert labels == ["precision=bf16", "precision=fp32"]
