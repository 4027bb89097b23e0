"""A run's record (benchmark/results/record.py) round-trips through its JSON byte for byte, old
versions and unknown keys included; a malformed one is one error naming the file and the field;
every committed record and plan loads and writes back unchanged. (The configs it holds round-trip
as well: tests/test_config.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.config import RunConfig
from benchmark.planning.grid import load_grid
from benchmark.results.plan import Plan
from benchmark.results.record import RECORD_VERSION, Pack, Record, RecordError, RunError, parse_record
from fake_records import AU, DIVERGED, FAILED, OLD, record

ROOT = Path(__file__).resolve().parents[2]


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


def test_a_malformed_record_is_one_error_naming_the_file_and_the_field():
    data = record(*next(iter(AU)))
    with pytest.raises(RecordError, match="^config: missing$"):
        Record.from_dict({k: v for k, v in data.items() if k != "config"})
    with pytest.raises(RecordError, match="^r.json: config: None is not a dict$"):
        parse_record(json.dumps(dict(data, config=None)), "r.json")
    with pytest.raises(RecordError, match="^r.json: not a JSON object$"):
        parse_record("[1, 2]", "r.json")
    with pytest.raises(RecordError, match="^r.json: not JSON"):
        parse_record("{", "r.json")
    bad = json.loads(json.dumps(data))
    bad["config"]["seed"] = "0"
    with pytest.raises(RecordError, match="^r.json: config.seed: '0' is not an int$"):
        parse_record(json.dumps(bad), "r.json")
    bad["config"]["seed"], bad["config"]["train"]["lr_typo"] = 0, 1
    with pytest.raises(RecordError, match="^r.json: config.train.lr_typo: not a train setting"):
        parse_record(json.dumps(bad), "r.json")
    with pytest.raises(RecordError, match="^r.json: error: has \\['message'\\], not type, message and traceback$"):
        parse_record(json.dumps(dict(data, error={"message": "x"})), "r.json")
    with pytest.raises(RecordError, match="^r.json: pack.size: '2' is not an int$"):
        parse_record(json.dumps(dict(data, pack={"size": "2", "index": 0, "run_ids": ["a"]})), "r.json")


def test_error_and_pack_are_typed():
    failed = parse_record(json.dumps(record(*FAILED, status="failed")))
    assert failed.error == RunError("RuntimeError", "CUDA out of memory\nsecond line", "Traceback...")
    run = load_grid("smoke").expand(methods=["vae"], datasets=["pinwheel"])[0]
    packed = Record.start(run, {"key": "k"}, ["other", run.run_id])
    assert packed.pack == Pack(2, 1, ("other", run.run_id)) and packed.resumed == 0
    assert Record.start(run, {"key": "k"}, [run.run_id]).pack is None
    packed.diverge(3, "loss is nan")
    again = parse_record(packed.to_json())
    assert again.pack == packed.pack and again.error == RunError("DivergedError", "loss is nan", None)
    assert again.config == run and again.to_json() == packed.to_json()


def test_every_committed_record_and_plan_loads_and_writes_back_byte_for_byte():
    """The on-disk format is the typed one's: each record (and plan) under results/ read and
    written again is the same bytes, its config typed (settings it lacks read as their defaults)."""
    paths = sorted(ROOT.glob("results/*/runs/*.json"))
    assert len(paths) > 300
    for path in paths:
        text = path.read_text()
        parsed = parse_record(text, str(path))
        assert isinstance(parsed.config, RunConfig) and parsed.to_json() == text, path
    plans = sorted(ROOT.glob("results/*/plan.json"))
    assert plans
    for path in plans:
        text = path.read_text()
        plan = Plan.from_json(text, str(path))
        assert all(isinstance(r.config, RunConfig) for r in plan.runs) and plan.to_json() == text, path


def test_a_new_record_names_its_code_and_version():
    run = load_grid("smoke").expand(methods=["vae"], datasets=["pinwheel"])[0]
    started = Record.start(run, {"key": "k"})
    assert started.record_version == RECORD_VERSION and started.status == "running"
    assert started.run_id == run.run_id and started.config == run and set(started.seeds) >= {"init", "eval"}
    keys = set(json.loads(started.to_json()))
    assert {"error", "diverged_epoch", "metrics", "curves", "code", "started_at"} <= keys
    assert not keys & {"per_class", "noise", "wall_time_s", "artifacts"}  # only once known


def test_a_record_is_done_when_its_key_is_todays_for_how_it_trained():
    """A packed run reaches code a run alone does not (code_key.PACKED_ONLY): each record is
    compared with the key of its own way of training."""
    from benchmark.results.record import RunKeys, run_state

    run = load_grid("smoke").expand()[0]
    keys = RunKeys(alone="a", packed="p")
    alone, packed = Record.start(run, {"key": "a"}, [run.run_id]), Record.start(run, {"key": "a"}, ["x", run.run_id])
    for record in (alone, packed):
        record.status = "ok"
    assert run_state(alone, keys) == "done" and run_state(packed, keys) == "stale"
    packed.code = {"key": "p"}
    assert run_state(packed, keys) == "done" and run_state(None, keys) == "todo"
    assert run_state(packed, RunKeys("a", "q")) == "stale" and run_state(packed, RunKeys("a", "q"), keep_stale=True) == "done"
