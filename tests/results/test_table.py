"""`run` keeps runs.csv and summary.csv up to date incrementally (ResultStore.write_table): after
every change the files are byte for byte what a full rebuild from the records writes
(ResultStore.rebuild_table / table.tables_csv), and an update parses only the records that changed.
No timings here: the cost is checked by counting the records parsed."""

from __future__ import annotations

import json
import os
import random
from collections import Counter

import pytest

from benchmark.results import store as store_module
from benchmark.results.record import Record
from benchmark.results.store import TABLE_CACHE, ResultStore, atomic_write_text
from benchmark.results.table import IncrementalTables, csv_records, record_row, tables_csv

EVAL = {"au_threshold": 0.01, "nll_samples": 20, "mi_examples": None}


def make_record(run_id: str, method: str = "vae", seed: int = 0, hp: dict | None = None, status: str = "ok",
                metrics: dict | None = None, dataset: str = "fashion-mnist", **fields) -> Record:
    """A record as `run` writes it, with the config sections the tables read."""
    config = {"method": method, "seed": seed, "hyperparameters": dict(hp or {}),
              "dataset": {"name": dataset, "train_size": 1000, "test_size": None},
              "model": {"arch": "mlp", "latent_dim": 8, "options": {"hidden": [64, 64]}},
              "train": {"epochs": 3, "lr": 0.001, "batch_size": 128}, "eval": dict(EVAL)}
    if metrics is None:
        metrics = {} if status != "ok" else {"au": 0.25 + seed / 100, "au_count": 2 + seed, "kl": 3.14159 + seed / 7,
                                             "mi": 1.5 - seed / 13, "rec": 80.123456789 + seed}
    fields.setdefault("wall_time_s", 12.5 + seed)
    fields.setdefault("device", "cpu (2 threads)")
    return Record.from_dict({"run_id": run_id, "config": config, "status": status, "metrics": metrics, **fields})


def put(store: ResultStore, record: Record) -> None:
    atomic_write_text(store.record_path(record.run_id), record.to_json())


def reference(store: ResultStore) -> tuple[str, str]:
    """The tables a full rebuild writes, from every record parsed afresh."""
    return tables_csv(store.records())


def tables(store: ResultStore) -> tuple[str, str]:
    return (store.dir / "runs.csv").read_text(), (store.dir / "summary.csv").read_text()


def assert_current(store: ResultStore, step: str) -> None:
    store.write_table()
    expected, got = reference(store), tables(store)
    assert got[0] == expected[0], f"runs.csv after {step}"
    assert got[1] == expected[1], f"summary.csv after {step}"


def count_parses(monkeypatch) -> list[int]:
    calls = [0]
    real = store_module.parse_record

    def counting(text, source="record"):
        calls[0] += 1
        return real(text, source)

    monkeypatch.setattr(store_module, "parse_record", counting)
    return calls


def steps() -> list[tuple[str, object]]:
    """(what, change): a record written, a file name removed, or raw text written as a record."""
    failure = "CUDA out of memory, \"tried\" to allocate\n  2 GiB"
    return [
        ("the first record", make_record("a0", seed=0)),
        ("a second seed of the setting", make_record("a1", seed=1)),
        ("a new method with a new hp column", make_record("b0", "beta-vae", 0, {"beta": 0.5})),
        ("its second seed", make_record("b1", "beta-vae", 1, {"beta": 0.5})),
        ("a setting sorting before it", make_record("b2", "beta-vae", 0, {"beta": 0.2})),
        ("a setting sorting after it", make_record("b3", "beta-vae", 0, {"beta": 2})),
        ("a failed run (an error with a comma, quotes and a newline)",
         make_record("c0", "beta-vae", 2, {"beta": 0.5}, status="failed",
                     error={"type": "RuntimeError", "message": failure, "traceback": None})),
        ("a diverged run", make_record("c1", "vae", 3, status="diverged", diverged_epoch=2, metrics={},
                                       error={"type": "DivergedError", "message": "loss nan", "traceback": None})),
        ("a record replacing a run (new numbers)", make_record("a0", seed=0, metrics={"au": 0.5, "au_count": 4, "kl": 1.0,
                                                                                       "mi": 0.75, "rec": 99.0})),
        ("the failed run rerun ok", make_record("c0", "beta-vae", 2, {"beta": 0.5})),
        ("an invalid metric", make_record("b4", "beta-vae", 3, {"beta": 0.5}, invalid={"mi": "above its cap"},
                                          metrics={"au": 0.5, "au_count": 3, "kl": 2.0, "mi": 50.0, "rec": 81.0})),
        ("an invalid int metric", make_record("b5", "beta-vae", 4, {"beta": 0.5}, invalid={"au_count": "made up"})),
        ("a metric that appears later", make_record("a2", seed=2, metrics={"au": 0.3, "au_count": 3, "kl": 2.5, "mi": 1.0,
                                                                           "rec": 79.0, "nll": 85.25, "ppl": 123.0})),
        ("a non-finite metric (hand-written JSON NaN)", "nan"),
        ("a bool hp in one method only", make_record("d0", "lid-vae", 0, {"trainable_lift": True, "beta": 1})),
        ("the same hp False", make_record("d1", "lid-vae", 1, {"trainable_lift": False, "beta": 1})),
        ("a large int hp (formatted as a float once missing elsewhere)", make_record("e0", "aggressive", 0,
                                                                                      {"steps": 1234567})),
        ("a float where that hp was an int", make_record("e1", "aggressive", 1, {"steps": 0.1234567})),
        ("a string where that hp was a number (such settings do not sort in Python)",
         make_record("e2", "aggressive", 2, {"steps": "auto"})),
        ("that record removed again", "-e2"),
        ("a list hp and a string with a newline", make_record("f0", "cyclical", 0, {"cycles": [1, 2], "note": "a\nb, c"})),
        ("its second seed", make_record("f1", "cyclical", 1, {"cycles": [1, 2], "note": "a\nb, c"})),
        ("a run id whose file sorts before its prefix's", make_record("f0-", "cyclical", 2, {"cycles": [1, 2], "extra": 1})),
        ("resumed appears", make_record("a3", seed=3, resumed=1)),
        ("a record removed", "-b3"),
        ("an unreadable file", "garbage"),
        ("the last ok run of a setting replaced by a failure",
         make_record("b2", "beta-vae", 0, {"beta": 0.2}, status="failed",
                     error={"type": "ValueError", "message": "x", "traceback": None})),
        ("another data set", make_record("g0", "vae", 0, dataset="mnist")),
        ("the record that held the first columns removed", "-a0"),
        ("the unreadable file removed", "-broken"),
    ]


def apply(store: ResultStore, change: object) -> None:
    if isinstance(change, Record):
        put(store, change)
    elif change == "nan":
        data = json.loads(make_record("a4", seed=4).to_json())
        data["metrics"]["kl"] = float("nan")
        atomic_write_text(store.record_path("a4"), json.dumps(data, indent=1, sort_keys=True))
    elif change == "garbage":
        store.record_path("broken").write_text("{not json")
    else:
        assert isinstance(change, str) and change.startswith("-")
        store.record_path(change[1:]).unlink()


def test_incremental_tables_match_a_full_rebuild_after_every_change(tmp_path):
    store = ResultStore(tmp_path, "grid")
    assert_current(store, "nothing yet")
    for step, change in steps():
        apply(store, change)
        assert_current(store, step)
    stats = store._tables.stats
    assert stats["runs_incremental"] >= 10 and stats["summary_incremental"] >= 10, stats
    assert not (stats["runs_disagree"] or stats["summary_disagree"] or stats["runs_fallback"]
                or stats["summary_fallback"]), stats
    fresh = ResultStore(tmp_path, "grid")  # another process: from the cache, or from the records
    fresh.write_table()
    assert tables(fresh) == reference(fresh)


ANY_KIND = [0, 1, 2, 1234567, -3, 0.5, 0.1234567, -0.0, "a", "b", "x,y", True, False, None, [1, 2]]
TYPED = {"vae": {}, "beta-vae": {"beta": [0.2, 0.5, 1, 2]},
         "lid-vae": {"flag": [True, False], "beta": [0.5], "gamma": ["a", "b"]},  # flag: bools and NA
         "cyclical": {"cycles": [1, 2, 4], "gamma": ["a", None]}}


def random_record(rng: random.Random, run_id: str, any_kind: bool) -> Record:
    if any_kind:  # values of every kind in one column: mostly full rebuilds, still byte for byte
        method = rng.choice(["vae", "beta-vae", "lid-vae"])
        hp = {name: rng.choice(ANY_KIND) for name in rng.sample(["beta", "gamma", "flag"], rng.randrange(3))}
    else:  # a grid's typed hyperparameters, methods with hyperparameters of their own
        method = rng.choice(list(TYPED))
        hp = {name: rng.choice(options) for name, options in TYPED[method].items()}
    status = rng.choice(["ok"] * 5 + ["failed", "diverged"])
    metrics = {"au": rng.random(), "au_count": rng.randrange(8), "kl": rng.random() * 10,
               "mi": rng.choice([rng.random(), rng.randrange(3)]), "rec": 80 + rng.random()}
    if rng.random() < 0.2:
        metrics["nll"] = 90 + rng.random()
    invalid = {rng.choice(["mi", "au_count"]): "cap"} if rng.random() < 0.1 else None
    return make_record(run_id, method, rng.randrange(5), hp, status=status, metrics=metrics if status == "ok" else {},
                       invalid=invalid)


@pytest.mark.parametrize("any_kind", [False, True], ids=["typed", "any-kind"])
def test_incremental_tables_match_on_random_changes(any_kind):
    """Random records added, replaced and removed, compared with a full rebuild after each."""
    stats = Counter()
    for seed in range(3):
        rng = random.Random(seed)
        present: dict[str, Record] = {}
        live = IncrementalTables()
        for step in range(40):
            run_id = "%04x" % rng.randrange(30)
            if run_id in present and rng.random() < 0.15:
                del present[run_id]
                runs, summary = live.update({run_id: None})
            else:
                present[run_id] = random_record(rng, run_id, any_kind)
                runs, summary = live.update({run_id: record_row(present[run_id])})
            expected = tables_csv(sorted(present.values(), key=lambda r: r.run_id + ".json"))
            assert runs == expected[0], f"runs.csv, seed {seed}, step {step}"
            assert summary == expected[1], f"summary.csv, seed {seed}, step {step}"
        stats += live.stats
    assert stats["runs_incremental"] > (20 if any_kind else 60), stats  # not all of them rebuilt
    if not any_kind:
        assert stats["summary_incremental"] > 60 and stats["summary_resorted"], stats
        assert not (stats["runs_disagree"] or stats["summary_disagree"] or stats["runs_fallback"]
                    or stats["summary_fallback"]), stats


def test_a_table_update_parses_only_the_records_that_changed(tmp_path, monkeypatch):
    """The cost of an update does not grow with the records: after the first, each update parses
    only the record files added or changed (the old rebuild parsed all of them every time)."""
    parses = count_parses(monkeypatch)
    store = ResultStore(tmp_path, "grid")
    for i in range(40):
        put(store, make_record(f"r{i:02d}", "beta-vae", i % 5, {"beta": [0.5, 1.0][i // 20]}))
    store.write_table()
    assert parses[0] == 40
    for i in range(40, 60):
        put(store, make_record(f"r{i:02d}", "beta-vae", i % 5, {"beta": 2.0}))
        parses[0] = 0
        store.write_table()
        assert parses[0] == 1, i
    parses[0] = 0
    store.write_table()  # nothing changed
    assert parses[0] == 0
    record = make_record("r07", "beta-vae", 2, {"beta": 0.5}, metrics={"au": 1.0, "kl": 0.5, "mi": 0.1, "rec": 70.0})
    store.record_path("r07").write_text(record.to_json())  # edited in place, as by hand
    store.write_table(save_cache=True)
    assert parses[0] == 1 and tables(store) == reference(store)

    parses[0] = 0
    again = ResultStore(tmp_path, "grid")  # a new process reads the saved rows
    again.write_table()
    assert parses[0] == 0 and tables(again) == reference(again)


def test_the_cache_is_checked_against_the_files(tmp_path, monkeypatch):
    store = ResultStore(tmp_path, "grid")
    for i in range(5):
        put(store, make_record(f"r{i}", seed=i))
    store.write_table(save_cache=True)
    cache = json.loads((store.dir / TABLE_CACHE).read_text())
    assert sorted(cache["files"]) == [f"r{i}.json" for i in range(5)]
    put(store, make_record("r1", seed=1, metrics={"au": 0.0, "kl": 0.0, "mi": 0.0, "rec": 1.0}))  # rewritten
    store.record_path("r2").unlink()
    put(store, make_record("r9", seed=9))
    parses = count_parses(monkeypatch)
    fresh = ResultStore(tmp_path, "grid")
    fresh.write_table()
    assert parses[0] == 2 and tables(fresh) == reference(fresh)  # r1 and r9 parsed, r2 gone

    cache["files"]["r0.json"][1]["kl"] = 123.0  # a cache saved by other code is not used
    cache["code"] = "other"
    (store.dir / TABLE_CACHE).write_text(json.dumps(cache))
    parses[0] = 0
    other = ResultStore(tmp_path, "grid")
    other.write_table()
    assert parses[0] == 5 and tables(other) == reference(other)
    (store.dir / TABLE_CACHE).write_text("{cut short")  # nor one that cannot be read
    broken = ResultStore(tmp_path, "grid")
    broken.write_table()
    assert tables(broken) == reference(broken)


def test_two_processes_writing_the_same_tables_agree_with_the_records(tmp_path):
    first, second = ResultStore(tmp_path, "grid"), ResultStore(tmp_path, "grid")
    for i in range(12):
        writer = (first, second)[i % 2]
        put(writer, make_record(f"r{i:02d}", ["vae", "beta-vae"][i % 3 == 0], i % 4,
                                {"beta": 0.5} if i % 3 == 0 else {}))
        if i == 6:
            put(second, make_record("r03", "beta-vae", 3, {"beta": 0.5}, status="failed",
                                    error={"type": "E", "message": "m", "traceback": None}))
        writer.write_table()
        assert tables(writer) == reference(writer), i
    first.write_table()
    assert tables(first) == reference(first)


def test_a_crash_mid_update_is_repaired_by_the_next_update(tmp_path, monkeypatch):
    store = ResultStore(tmp_path, "grid")
    for i in range(6):
        put(store, make_record(f"r{i}", seed=i))
    store.write_table()
    put(store, make_record("r6", "beta-vae", 0, {"beta": 0.5}))

    real = store_module.atomic_write_text

    def full_disk(path, text):  # summary.csv is written, then runs.csv fails: the two disagree
        if path.name == "runs.csv":
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(store_module, "atomic_write_text", full_disk)
    with pytest.raises(store_module.StoreError):
        store.write_table()
    monkeypatch.setattr(store_module, "atomic_write_text", real)
    assert tables(store) != reference(store)
    store.write_table()
    assert tables(store) == reference(store)

    put(store, make_record("r7", "beta-vae", 1, {"beta": 0.5}))

    def interrupted(self, changes):  # killed half way through the bookkeeping
        self._add("r7", {"run_id": "r7"})
        raise KeyboardInterrupt

    monkeypatch.setattr(IncrementalTables, "update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.write_table()
    monkeypatch.undo()
    store.write_table()
    assert tables(store) == reference(store)


def test_rebuild_table_is_the_reference(tmp_path):
    store = ResultStore(tmp_path, "grid")
    for step, change in steps()[:12]:
        apply(store, change)
    store.rebuild_table()
    rebuilt = tables(store)
    os.remove(store.dir / "runs.csv")
    store.write_table()
    assert tables(store) == rebuilt == reference(store)


def test_csv_records_keep_quoted_newlines():
    text = 'a,b\n1,"x\ny"\n2,"""q""\n"\n'
    assert csv_records(text) == ["a,b\n", '1,"x\ny"\n', '2,"""q""\n"\n']
    with pytest.raises(ValueError):
        csv_records('1,"x\n')
