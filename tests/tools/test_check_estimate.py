"""The check of the compute estimate against real runs (benchmark/tools/check_estimate.py): one run
per kind, one at a time and in packs, and a bad input as a clear error."""

from __future__ import annotations

import json
import math

import pytest


def test_check_estimate_against_real_runs(tiny, tmp_path):
    from benchmark.tools.check_estimate import check, cut, format_check, representatives

    pinwheel = [r for r in tiny if r.dataset.name == "pinwheel"]
    picked = representatives(pinwheel)
    # one run per kind: vae, beta-vae (beta 0.1 and 0.2 cost the same), 2 lr-vae schedules, il-lid-vae
    assert [(r.method, r.seed) for r in picked] == [("vae", 0), ("beta-vae", 0), ("lr-vae", 0), ("lr-vae", 0),
                                                    ("il-lid-vae", 0)]
    assert cut(picked[0], 60, None).dataset.train_size == 60 and cut(picked[0], 500, 20).dataset.test_size == 20
    runs = [cut(r, None, 30) for r in picked if r.method in ("vae", "lr-vae")]
    result = check(runs, "cpu", None, tmp_path)
    records = [json.loads(p.read_text()) for p in (tmp_path / "one-at-a-time" / "check-estimate" / "runs").glob("*.json")]
    assert sorted(r["run_id"] for r in records) == sorted(r.run_id for r in runs)
    rows = {(r["dataset"], r["method"]): r for r in result["rows"]}
    assert set(rows) == {("pinwheel", "vae"), ("pinwheel", "lr-vae")} and rows[("pinwheel", "lr-vae")]["runs"] == 2
    lr_records = [r for r in records if r["config"]["method"] == "lr-vae"]
    assert rows[("pinwheel", "lr-vae")]["train_time_s"] == pytest.approx(sum(r["train_time_s"] for r in lr_records))
    assert rows[("pinwheel", "lr-vae")]["steps"] == 2 * 2 * math.ceil(100 / 32)
    assert result["totals"]["wall_ratio"] == pytest.approx(
        sum(r["wall_time_s"] for r in records) / sum(r["estimated_s"] for r in result["rows"]))
    assert "pinwheel" in format_check(result) and "parallel" not in result


def test_check_estimate_bad_input_is_a_clear_error(capsys, no_system_data):
    from benchmark.tools.check_estimate import main

    assert main(["--methods", "nope", "--device", "cpu"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["--grid", "smoke", "--datasets", "fashion-mnist", "--device", "cpu"]) == 2  # no data anywhere
    assert "fashion-mnist" in capsys.readouterr().err


def test_check_estimate_packed_mode(tiny, tmp_path):
    from benchmark.tools.check_estimate import check_packing, cut, format_check

    runs = [cut(r, None, 30) for r in tiny if r.dataset.name == "pinwheel" and r.method == "vae" and r.seed == 0]
    result = check_packing(runs, "cpu", None, tmp_path, 2)
    assert result["k"] == 2 and result["runs"] == 2 and result["packed_records"] == 2
    packed = [json.loads(p.read_text()) for p in (tmp_path / "pack-2" / "check-estimate" / "runs").glob("*.json")]
    assert sorted(r["config"]["seed"] for r in packed) == [0, 1] and all(r["pack"]["size"] == 2 for r in packed)
    assert result["measured_packed_train_s"] == pytest.approx(sum(r["train_time_s"] for r in packed))
    assert all(_positive(result[k]) for k in ("packed_s", "one_at_a_time_s", "estimated_packed_train_s", "train_ratio"))
    text = format_check({"device": "cpu", "runs": [], "rows": [], "one_at_a_time_s": 1.0, "packing": result,
                         "totals": {k: 1.0 for k in ("estimated_train_s", "estimated_eval_s", "estimated_s",
                                                     "train_time_s", "eval_time_s", "wall_time_s")}})
    assert "packs of 2 (2 runs, seeds 0-1)" in text


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0
