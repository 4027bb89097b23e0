"""The compute estimate of a grid: kinds, arithmetic, real timing on a tiny grid, printout."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

import benchmark.tools.estimate as estimate
from benchmark.tools.estimate import cost_key, estimate_compute, format_estimate
from benchmark.planning.grid import load_grid

from fakes import OWN_STEP_PLUGIN


def test_cost_key_ignores_float_weights(tiny):
    keys = {(r.dataset.name, r.method): set() for r in tiny}
    for run in tiny:
        keys[(run.dataset.name, run.method)].add(cost_key(run, (2,) if run.dataset.name == "pinwheel" else (1, 28, 28)))
    assert len(keys[("pinwheel", "beta-vae")]) == 1  # beta 0.1 and 0.2 cost the same
    assert len(keys[("pinwheel", "il-lid-vae")]) == 1  # so do L = 0 and L = 1
    assert len(keys[("pinwheel", "lr-vae")]) == 2  # the schedule is not a float: timed separately


def test_arithmetic_with_fixed_timings(tiny, monkeypatch):
    calls = []

    def fake_time(run, shape, device, steps, warmup, length=0):
        calls.append((run.method, shape))
        return 0.5, 0.01, 0.02, 1e-4  # s per step, per encode, per encode + decode, per IW code

    monkeypatch.setattr(estimate, "time_kind", fake_time)
    result = estimate_compute(tiny, "cpu", steps=2)
    # 2 data sets x (vae, beta-vae, 2 lr-vae schedules, il-lid-vae) kinds
    assert len(calls) == len(result.kinds) == 10
    assert result.runs == len(tiny) == 2 * (1 + 2 + 2 + 2) * 2
    rows = {(r.dataset, r.method): r for r in result.rows}
    assert [(r.dataset, r.method) for r in result.rows] == sorted(rows)
    pin = rows[("pinwheel", "beta-vae")]
    steps_per_run = 2 * math.ceil(100 / 32)
    assert pin.runs == 4 and pin.steps == 4 * steps_per_run
    assert pin.train_hours == pytest.approx(4 * steps_per_run * 0.5 / 3600)
    # eval: 2 curve points + 1 final encode over 50 test examples (one pass of up to EVAL_BATCH),
    # 1 final encode + decode pass, no IW-NLL (nll_samples = 0)
    assert pin.eval_hours == pytest.approx(4 * (3 * 0.01 + 0.02) / 3600)
    with_nll = dataclasses.replace(tiny[0], eval=dataclasses.replace(tiny[0].eval, nll_samples=10, nll_examples=20))
    one = estimate_compute([with_nll], "cpu", steps=2).rows[0]
    assert one.eval_hours == pytest.approx((3 * 0.01 + 0.02 + 10 * 20 * 1e-4) / 3600)
    fashion = rows[("fashion-mnist", "vae")]  # whole published split: 60000 / 500 = 120 steps per epoch
    assert fashion.steps == 2 * 2 * 120
    assert result.hours == pytest.approx(sum(r.train_hours + r.eval_hours for r in result.rows))


def test_a_busy_machine_is_named_beside_the_estimate(tiny, monkeypatch):
    """Timed on a CPU whose load average is above half its cores: a note says the estimate can be
    too long; on an idle one, none."""
    monkeypatch.setattr(estimate, "time_kind", lambda *args, **kwargs: (0.5, 0.01, 0.02, 1e-4))
    monkeypatch.setattr(estimate.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(estimate.os, "getloadavg", lambda: (4.2, 3.0, 2.0))
    busy = estimate.dry_run_estimate(tiny[:1], "cpu")
    assert busy.splitlines()[-1].startswith("note: this machine was busy") and "load average 4.2 on 2 cores" in busy
    monkeypatch.setattr(estimate.os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    assert "busy" not in estimate.dry_run_estimate(tiny[:1], "cpu")


def test_real_timing_on_a_tiny_grid(tiny):
    runs = [r for r in tiny if r.dataset.name == "pinwheel" and r.method in ("vae", "il-lid-vae")]
    state = torch.random.get_rng_state()
    result = estimate_compute(runs, "cpu", steps=1, warmup=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # timing leaves the global RNG alone
    assert len(result.kinds) == 2 and all(k.step_s > 0 and k.forward_s > 0 and k.iw_code_s > 0 for k in result.kinds)
    assert result.device.startswith("cpu") and result.hours > 0
    text = format_estimate(result, gpus=4, kinds=True)
    assert "pinwheel" in text and "il-lid-vae" in text and "total" in text
    assert "spread over 4 such devices" in text and "s per training step" in text


def test_full_grid_estimate_needs_no_data(monkeypatch, tmp_path):
    """Every data set of the paper grid has a declared shape and split sizes: no files read."""
    from benchmark.data import roots

    monkeypatch.setattr(roots, "SYSTEM_DATA_ROOTS", [tmp_path])
    monkeypatch.setattr(roots, "CACHE_ROOT", tmp_path)
    monkeypatch.setattr(estimate, "time_kind", lambda run, shape, device, steps, warmup, length=0: (0.01, 0.001, 0.002, 1e-6))
    result = estimate_compute(load_grid("full").expand(), "cpu")
    assert result.runs == 920 and len(result.rows) == 5 * 13  # 5 data sets x 13 methods
    assert {r.dataset for r in result.rows} == {"mnist", "fashion-mnist", "omniglot", "celeba", "ffhq"}
    text = format_estimate(result)
    assert text.count("\n") == 65 + 3
    celeba = next(r for r in result.rows if (r.dataset, r.method) == ("celeba", "vae"))
    assert celeba.steps == 5 * 20 * math.ceil(162_770 / 128)


def test_bad_steps():
    with pytest.raises(ValueError):
        estimate_compute([], "cpu", steps=0)
    assert estimate_compute([], "cpu").runs == 0


def test_unknown_shape_loads_the_data(tmp_path, monkeypatch, fake_fashion_root: Path):
    from benchmark.data import catalog

    spec = catalog.DATASETS["fashion-mnist"]
    monkeypatch.setitem(catalog.DATASETS._items, "fashion-mnist", dataclasses.replace(spec, shape=None, train_size=None))
    monkeypatch.setattr(catalog, "_CACHE", {})
    monkeypatch.setattr(estimate, "time_kind", lambda run, shape, device, steps, warmup, length=0: (1.0, 0.0, 0.0, 0.0))
    run = next(r for r in load_grid("smoke").expand() if r.dataset.name == "fashion-mnist")
    run = dataclasses.replace(run, dataset=dataclasses.replace(run.dataset, train_size=None))
    result = estimate_compute([run], "cpu", data_root=fake_fashion_root)
    assert result.rows[0].steps == run.train.epochs * math.ceil(300 / run.train.batch_size)


def test_packed_estimate_charges_each_run_its_share_of_its_pack(tiny, monkeypatch, plugin_dir):
    monkeypatch.setattr(estimate, "time_kind", lambda run, shape, device, steps, warmup, length=0: (0.5, 0.01, 0.02, 1e-4))
    packs = []

    def fake_pack(run, shape, device, size, steps, warmup):
        packs.append((run.method, size))
        return 0.3 * size + 0.4  # s per step of a pack of `size` runs

    monkeypatch.setattr(estimate, "time_pack_step", fake_pack)
    plugin_dir({"own.py": OWN_STEP_PLUGIN})
    alone = [dataclasses.replace(r, method="own-step", hyperparameters={}) for r in tiny
             if r.method == "vae" and r.dataset.name == "pinwheel"]
    result = estimate_compute(tiny + alone, "cpu", steps=2, pack=4)
    rows = {(r.dataset, r.method): r for r in result.rows}
    steps_per_run = 2 * math.ceil(100 / 32)
    # beta-vae packs its 2 seeds x 2 betas (beta is a pack scalar): one pack of 4 at 1.6 s per step
    assert rows[("pinwheel", "beta-vae")].train_hours == pytest.approx(4 * steps_per_run * 1.6 / 4 / 3600)
    # vae: its 2 seeds, one pack of 2 at 1.0 s per step
    assert rows[("pinwheel", "vae")].train_hours == pytest.approx(2 * steps_per_run * 1.0 / 2 / 3600)
    # a method that cannot pack: charged its own step time, and never timed as a pack
    assert rows[("pinwheel", "own-step")].train_hours == pytest.approx(2 * steps_per_run * 0.5 / 3600)
    assert all(method != "own-step" for method, _ in packs)
    assert result.pack == 4 and "in packs of up to 4 runs" in format_estimate(result)
    assert rows[("pinwheel", "beta-vae")].eval_hours == pytest.approx(4 * (3 * 0.01 + 0.02) / 3600)  # per run


def test_real_packed_timing_on_a_tiny_grid(tiny):
    runs = [r for r in tiny if r.dataset.name == "pinwheel" and r.method in ("vae", "il-lid-vae")]
    text = format_estimate(estimate_compute(runs, "cpu", steps=1, warmup=1, pack=2), kinds=True)
    assert "packs: 2 runs" in text and "in packs of up to 2 runs" in text
