"""The pack plan of a dry run (benchmark/planning/pack_plan.py): the packs `run --pack` would
make and the steps they take, printed with no GPU (`--gpu-memory` plans for an assumed one)."""

from __future__ import annotations

import math

import torch

from benchmark.cli import main
from benchmark.planning.grid import load_grid
from benchmark.planning.pack_plan import plan_packs, run_steps


def test_run_steps_are_epochs_times_batches_and_a_pack_takes_one_runs_steps():
    runs = [r.config for r in load_grid("quick").runs()]
    first = runs[0]
    assert run_steps(first) == first.train.epochs * math.ceil(first.dataset.train_size / first.train.batch_size)
    alone, packed = plan_packs(runs, 1), plan_packs(runs, 5)
    assert alone.pack_steps == alone.run_steps == sum(run_steps(c) for c in runs)
    assert packed.run_steps == alone.run_steps
    assert packed.pack_steps == sum(run_steps(p[0]) for p in packed.packs) < alone.pack_steps
    assert "M pack-steps" in packed.text("--pack 5")


def test_a_dry_run_plans_pack_auto_for_an_assumed_gpu_on_a_cpu_machine(tmp_path, capsys):
    code = main(["run", "--grid", "quick", "--results", str(tmp_path), "--dry-run", "--pack", "auto", "--device", "cuda",
                 "--gpu-memory", "80", "--no-estimate"])
    out = capsys.readouterr().out
    assert code == 0
    assert "pack plan (--pack auto for a GPU of 80 GiB): " in out and "pack-steps" in out
    assert main(["run", "--grid", "quick", "--results", str(tmp_path), "--dry-run", "--gpu-memory", "80"]) == 2
    assert "--gpu-memory sizes the packs of --pack auto" in capsys.readouterr().err
    assert main(["run", "--grid", "quick", "--results", str(tmp_path), "--dry-run", "--pack", "auto", "--device", "cpu",
                 "--gpu-memory", "80"]) == 2
    assert "--gpu-memory plans for a GPU: add --device cuda" in capsys.readouterr().err
    if not torch.cuda.is_available():  # without an assumed size there is nothing to size the packs from
        assert main(["run", "--grid", "quick", "--results", str(tmp_path), "--dry-run", "--pack", "auto",
                     "--device", "cuda"]) == 2
        assert "plan for one with --gpu-memory GIB" in capsys.readouterr().err


def test_in_full_no_two_packs_differ_in_epochs_alone():
    """docs/running.md: letting runs of different epochs share a pack would merge no pack of
    `full`, since its epochs follow the data set and those data sets differ in split size or shape
    (and a pack's runs share every step's schedule). Checked here, so the sentence cannot go stale."""
    import dataclasses

    from benchmark.discovery import METHODS
    from benchmark.ml.pack import pack_key

    runs = [r.config for r in load_grid("full").runs()]

    def key(config, epochs_count: bool) -> str:
        if not epochs_count:
            config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=1))
        return pack_key(config, tuple(getattr(METHODS[config.method], "pack_scalars", ())))

    assert len({key(c, True) for c in runs}) == len({key(c, False) for c in runs})
    assert len({c.train.epochs for c in runs}) > 1  # (epochs do differ in full)
