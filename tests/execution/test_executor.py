"""Executing a prepared job (benchmark/execution/executor.py): runs share a pack only when they
differ in their seed and pack scalars; a method that cannot pack runs alone and says why."""

from __future__ import annotations

from benchmark.execution.executor import make_packs
from benchmark.planning.grid import load_grid

from fakes import OWN_STEP_PLUGIN


def test_only_runs_that_differ_in_their_seed_and_pack_scalars_share_a_pack(tmp_path, plugin_dir):
    plugin_dir({"own.py": OWN_STEP_PLUGIN})
    grid = tmp_path / "g.toml"
    grid.write_text('''
seeds = [0, 1, 2]
[train]
epochs = 1
[[datasets]]
name = "pinwheel"
[[methods]]
name = "lr-vae"
num_samples = [1, 2]
alpha_T = [0.4, 1.0]
[[methods]]
name = "aggressive"
[[methods]]
name = "own-step"
''')
    runs = [r.config for r in load_grid(str(grid)).runs()]
    lines: list[str] = []
    packs = make_packs(runs, 4, lines.append)
    lr = [p for p in packs if p[0].method == "lr-vae"]
    assert sorted(len(p) for p in lr) == [2, 2, 4, 4]
    for p in lr:
        assert len({c.hyperparameters["num_samples"] for c in p}) == 1  # not a pack scalar: apart
        assert len({(c.seed, c.hyperparameters["alpha_T"]) for c in p}) == len(p)  # a pack scalar: mixed
    assert [len(p) for p in packs if p[0].method == "aggressive"] == [3]  # its own pack_training_step
    assert [len(p) for p in packs if p[0].method == "own-step"] == [1, 1, 1]
    assert lines == ["own-step runs alone: own-step overrides training_step without a pack_training_step: "
                     "its step is its own"]  # the method's own reason (pack_refusal), said once
    assert [len(p) for p in make_packs(runs, 1)] == [1] * len(runs)
    assert sorted(c.run_id for p in packs for c in p) == sorted(c.run_id for c in runs)


def test_packs_can_be_sized_per_kind_of_run():
    runs = [r.config for r in load_grid("smoke").runs(seeds=[0, 1, 2, 3])]
    packs = make_packs(runs, lambda config: 3 if config.method == "vae" else 2)
    for pack in packs:
        assert len(pack) <= (3 if pack[0].method == "vae" else 2)
    assert any(len(p) == 3 for p in packs if p[0].method == "vae")
    assert sorted(c.run_id for p in packs for c in p) == sorted(c.run_id for c in runs)
