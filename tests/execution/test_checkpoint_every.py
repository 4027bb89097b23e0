"""How often a pack checkpoints (benchmark/execution/checkpoint_every.py): every E epochs, or after
the first epoch ending M minutes after the last save (the default, 10 minutes), or never."""

from __future__ import annotations

import pytest

from benchmark.cli import main
from benchmark.execution.checkpoint_every import CheckpointEvery


def test_epochs_minutes_or_never():
    assert CheckpointEvery.parse("5") == CheckpointEvery(epochs=5) and str(CheckpointEvery.parse("5")) == "every 5 epochs"
    assert CheckpointEvery.parse("2.5m") == CheckpointEvery(minutes=2.5)
    assert str(CheckpointEvery.parse("0")) == "never"
    every_epochs, every_minutes, never = CheckpointEvery(epochs=3), CheckpointEvery(minutes=10), CheckpointEvery()
    assert [e for e in range(1, 10) if every_epochs.due(e, 0.0)] == [3, 6, 9]
    assert not every_minutes.due(1, 599.0) and every_minutes.due(1, 600.0)  # after the epoch that ends past it
    assert not any(never.due(e, 1e9) for e in range(1, 10))
    for bad in ("-1", "0m", "m", "1.5", "10 min", "100001"):
        with pytest.raises(ValueError, match="expected E .* or Mm"):
            CheckpointEvery.parse(bad)


def test_a_bad_value_is_a_one_line_error_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--grid", "smoke", "--checkpoint-every", "5 minutes", "--dry-run"])
    assert exit_.value.code == 2 and "--checkpoint-every: expected E" in capsys.readouterr().err


def test_a_pack_saves_on_the_first_epoch_past_its_minutes(monkeypatch, tmp_path):
    import benchmark.execution.runner as runner

    saved, now = [], [0.0]
    monkeypatch.setattr(runner.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(runner, "save_checkpoint", lambda path, trainer, *rest: saved.append(trainer.epoch))

    class Trainer:
        epoch, done = 0, False

    checkpoints = runner.Checkpoints(tmp_path / "c.pt", CheckpointEvery(minutes=1), lambda _: None, last_save=0.0)
    from types import SimpleNamespace

    trainer = Trainer()
    runs = [SimpleNamespace(record=SimpleNamespace(resumed=0), curves=SimpleNamespace(generator=None))]
    monkeypatch.setattr(runner, "training", lambda runs: [object()])
    for epoch, seconds in enumerate([25, 25, 25, 100, 10], start=1):  # ends at 25, 50, 75 (save), 175 (save), 185
        now[0] += seconds
        trainer.epoch = epoch
        checkpoints.save_if_due(trainer, runs, runner.Clock())
    assert saved == [3, 4]
