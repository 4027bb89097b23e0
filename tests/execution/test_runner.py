"""Runs (benchmark/execution/runner.py): a run whose MI is estimated on a subset of the training
split records it so, and keeps its curves on the whole test split."""

from __future__ import annotations

import math

import pytest

from benchmark.config import DatasetConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig
from benchmark.execution.runner import execute_pack


QUICK_EVAL = {"nll_samples": 0, "geometry_points": 0, "noise_points": 0}  # only what MI needs


def toy_run(**eval_settings) -> RunConfig:
    return RunConfig(DatasetConfig("pinwheel", train_size=200, test_size=100), "vae", {},
                     ModelConfig(latent_dim=2, options={"hidden": [8]}), TrainConfig(epochs=2, batch_size=50),
                     EvalConfig(mi_curve_every=1, **{**QUICK_EVAL, **eval_settings}))


def test_execute_records_the_training_split_and_keeps_curves_on_the_test_split():
    train = execute_pack([toy_run(mi_split="train", mi_examples=150)], device="cpu", log=lambda _: None)[0].record.to_dict()
    assert train["status"] == "ok", train["error"]
    assert train["estimators"]["mi_split"] == "train" and train["estimators"]["mi_examples"] == 150
    assert train["estimators"]["mi_cap"] == pytest.approx(math.log(150))
    assert isinstance(train["metrics"]["mi_at_cap"], bool)
    # the curves stay on the whole test split, the last point included (no estimator mixing)
    assert "test_mi" in train["curves"][0] and train["curves"][-1]["test_mi"] != train["metrics"]["mi"]
    assert train["curves"][-1]["test_mi"] <= math.log(100) + 1e-9
    test = execute_pack([toy_run()], device="cpu", log=lambda _: None)[0].record.to_dict()
    assert test["status"] == "ok", test["error"]
    assert test["curves"][-1]["test_mi"] == test["metrics"]["mi"]
    assert test["estimators"]["mi_examples"] == 100 and test["estimators"]["mi_cap"] == pytest.approx(math.log(100))


def test_a_run_alone_executes_no_packed_only_definition_and_its_record_has_the_alone_key(monkeypatch):
    """The code key of a run trained alone skips code_key.PACKED_ONLY: that is only true while
    no such definition runs for it."""
    import benchmark.execution.runner as runner
    import benchmark.ml.train as train
    from benchmark.planning.code_key import PACKED_ONLY, run_code

    callers = {"StackStep": train, "make_pack_trainer": runner, "evaluate_pack": runner,
               "pack_curve_points": runner}  # the module calling each
    assert {name for _, name in PACKED_ONLY} == set(callers)
    for _, name in PACKED_ONLY:
        def refuse(*args, name=name, **kwargs):
            raise AssertionError(f"a run alone reached {name}, a packed-only definition")

        monkeypatch.setattr(callers[name], name, refuse)
    config = toy_run()
    record = execute_pack([config], device="cpu", log=lambda _: None)[0].record
    assert record.status == "ok", record.error
    assert record.code == run_code(config) and record.code["key"] != run_code(config, packed=True)["key"]
    with pytest.raises(AssertionError, match="reached StackStep"):
        train.make_step([object(), object()], config.train, None, [], [None, None])


def test_a_pack_evaluated_in_lockstep_gives_each_run_the_numbers_of_its_evaluation_one_after_another(monkeypatch):
    """On a GPU a pack's runs are evaluated in lockstep (their model passes batched), their curve
    points after every epoch too; the records must not tell which: every metric and curve point as
    evaluated one after another (float rounding aside), each run's eval_time_s its share of the
    pack's."""
    import dataclasses

    import torch

    import benchmark.execution.runner as runner

    assert runner.lockstep_pays(torch.device("cuda")) and not runner.lockstep_pays(torch.device("cpu"))
    configs = [dataclasses.replace(toy_run(nll_samples=16, nll_examples=50, geometry_points=8, noise_points=8), seed=s)
               for s in range(3)]
    records, lockstepped = {}, []

    class Counted(runner.Lockstep):
        def run(self, calls):
            lockstepped.append(len(calls))
            return super().run(calls)

    monkeypatch.setattr(runner, "Lockstep", Counted)
    for lockstep in (False, True):
        monkeypatch.setattr(runner, "lockstep_pays", lambda device, on=lockstep: on)
        records[lockstep] = [r.record.to_dict() for r in execute_pack(configs, device="cpu", log=lambda _: None)]
    assert lockstepped == [3] * (configs[0].train.epochs + 1)  # every epoch's curve points, then the evaluation
    for one, together in zip(records[False], records[True]):
        assert one["status"] == together["status"] == "ok", (one["error"], together["error"])
        assert one["metrics"].keys() == together["metrics"].keys()
        assert one["estimators"].keys() == together["estimators"].keys()
        for key, value in one["metrics"].items():
            assert together["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
        assert len(one["curves"]) == len(together["curves"])
        for a, b in zip(one["curves"], together["curves"]):
            assert a.keys() == b.keys() and b == pytest.approx(a, rel=1e-5, abs=1e-6)
        for key, values in one["vectors"].items():
            assert together["vectors"][key] == pytest.approx(values, rel=1e-5, abs=1e-7), key
    assert len({r["eval_time_s"] for r in records[True]}) == 1  # one share each
    assert len({r["metrics"]["mi"] for r in records[True]}) == 3  # each run its own numbers


def test_a_pack_holds_each_split_its_runs_share_once_and_each_run_still_trains_on_its_own():
    import dataclasses

    import torch

    from benchmark.data.splits import DataSplit, Dataset
    from benchmark.execution.runner import Run, share_equal_splits

    def split(seed: int, n: int = 40) -> DataSplit:
        generator = torch.Generator().manual_seed(seed)
        return DataSplit(torch.randint(0, 256, (n, 1, 4, 4), generator=generator, dtype=torch.uint8),
                         torch.zeros(n, dtype=torch.long))

    def run(k: int, train: int, test: int) -> Run:
        data = Dataset("d", split(train), split(test), 1, valid=split(7) if k else None)
        return Run(k, None, None, data, None, None, None, None, None)

    runs = [run(0, 1, 5), run(1, 1, 5), run(2, 2, 5), run(3, 2, 6)]  # equal contents, distinct tensors
    share_equal_splits(runs)
    assert runs[0].data.train.x is runs[1].data.train.x and runs[2].data.train.x is runs[3].data.train.x
    assert not torch.equal(runs[0].data.train.x, runs[2].data.train.x)
    assert runs[0].data.test.x is runs[1].data.test.x is runs[2].data.test.x is not runs[3].data.test.x
    assert runs[0].data.valid is None and runs[1].data.valid.x is runs[2].data.valid.x is runs[3].data.valid.x
    from benchmark.ml.run_data import RunData
    data = RunData([r.data.train.x for r in runs])
    assert data.x.shape == (2, 40, 1, 4, 4)  # two distinct tensors, not four
    index = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]])
    batch = data.batch(index)
    for k, r in enumerate(runs):
        assert torch.equal(batch[k], r.data.train.x[index[k]])
    one = RunData([runs[0].data.train.x] * 3)
    assert one.x is runs[0].data.train.x and torch.equal(one.batch(index[:3])[2], runs[0].data.train.x[index[2]])
    assert dataclasses.is_dataclass(runs[0].data)
