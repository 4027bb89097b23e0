"""Aggressive inference (methods/aggressive.py): encoder-only steps until the block loss rises, one
decoder step, off when the held-out MI drops (MI measured on a validation split held out from
training, never the test split); encoder and decoder keep separate optimiser state."""

from __future__ import annotations

import pytest
import torch

from benchmark.config import TrainConfig
from benchmark.discovery import METHODS
from benchmark.ml.train import Trainer

from image_methods import IMAGE, at, build, module


def test_block_rule_stops_when_a_block_mean_rises_or_at_the_cap():
    BlockStop = module("aggressive").BlockStop

    def steps(losses: list[float], block: int, cap: int) -> int:
        rule = BlockStop(block, cap)
        for loss in losses:
            if not rule.add(torch.tensor(loss), 4):
                break
        return rule.steps

    falling_then_up = [10.0] * 5 + [9.0] * 5 + [8.0] * 5 + [8.5] * 5 + [1.0] * 80
    assert steps(falling_then_up, block=5, cap=100) == 20  # the 4th block's mean exceeds the 3rd's
    assert steps([10.0 - 0.01 * k for k in range(200)], block=10, cap=100) == 100  # never rises: the cap
    assert steps([5.0] * 200, block=10, cap=37) == 37  # equal means do not stop
    assert steps([1e9] * 20 + [2e9] * 10, block=10, cap=100) == 30  # the first block is always kept


class SpyTools:
    """Step tools that record which parameters each step moves and count fresh batches."""

    def __init__(self, method, batch: int = 8):
        self.method, self.batch = method, batch
        self.optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
        self.stepped: list[set[str]] = []
        self.fresh = 0

    def step(self, loss, params=None):
        ids = None if params is None else {id(p) for p in params}
        self.stepped.append({n for n, p in self.method.named_parameters() if ids is None or id(p) in ids})
        self.optimizer.zero_grad()
        loss.backward()
        if ids is not None:
            for p in self.method.parameters():
                if id(p) not in ids:
                    p.grad = None
        self.optimizer.step()

    def fresh_batch(self):
        self.fresh += 1
        return torch.rand(self.batch, *IMAGE)


def test_aggressive_step_is_encoder_only_steps_then_one_decoder_step():
    method = build("aggressive", block=3, max_inner_steps=12)
    tools = SpyTools(method)
    parts = method.training_step(torch.rand(8, *IMAGE), at(0, 10), tools)
    encoder = {n for n, _ in method.named_parameters() if n.startswith("model.encoder.")}
    decoder = {n for n, _ in method.named_parameters() if n.startswith("model.decoder.")}
    inner = int(parts["inner_steps"])
    assert 3 <= inner <= 12 and parts["aggressive"] == 1.0
    assert tools.stepped == [encoder] * inner + [decoder]
    assert tools.fresh == inner - 1  # the first inner step reuses the decoder step's batch


def test_aggressive_mode_ends_when_held_out_mi_drops(monkeypatch):
    method = build("aggressive", mi_patience=1, block=2, max_inner_steps=6)
    mis = iter([0.5, 0.8, 0.7, 0.9])
    monkeypatch.setattr(method, "held_out_mi", lambda held_out: next(mis))
    tools = SpyTools(method)
    x = torch.rand(8, *IMAGE)
    history = []
    for epoch in range(4):
        parts = method.training_step(x, at(epoch, 10), tools)
        history.append((parts["aggressive"], parts["inner_steps"] > 0))
        method.on_epoch_end(epoch, x)
    assert history == [(1.0, True), (1.0, True), (1.0, True), (0.0, False)]
    assert len(tools.stepped[-1]) == len(list(method.parameters()))  # after: one joint step
    extras = method.record_extras()
    assert extras["aggressive_stopped_after_epoch"] == 3 and extras["held_out_mi_checks"] == [0.5, 0.8, 0.7]
    assert [n > 0 for n in extras["inner_steps_per_epoch"]] == [True, True, True, False]
    patient = build("aggressive", mi_patience=2)
    mis = iter([0.5, 0.8, 0.7, 0.9, 0.6, 0.6])
    monkeypatch.setattr(patient, "held_out_mi", lambda held_out: next(mis))
    for epoch in range(6):
        patient.on_epoch_end(epoch, x)
    assert patient.record_extras()["aggressive_stopped_after_epoch"] == 5  # the image code's counting


def test_aggressive_encoder_and_decoder_keep_separate_optimiser_state():
    method = build("aggressive", block=2, max_inner_steps=6)
    x = (torch.rand(64, *IMAGE) * 255).to(torch.uint8)
    trainer = Trainer([method], [x], TrainConfig(epochs=1, batch_size=16), [torch.Generator().manual_seed(0)],
                      [torch.rand(32, *IMAGE)])
    (parts,) = trainer.run_epoch()
    state = trainer.step.optimizer.state
    counts = method.record_extras()["inner_steps_per_epoch"]
    assert len(counts) == 1 and counts[0] == pytest.approx(4 * parts["inner_steps"])
    for p in method.model.encoder.parameters():
        assert int(state[p]["step"]) == counts[0]
    for p in method.model.decoder.parameters():
        assert int(state[p]["step"]) == 4  # one decoder step per batch
    assert len(method.record_extras()["held_out_mi_checks"]) == 1


def test_aggressive_decides_on_a_validation_split_held_out_from_training_never_the_test_split(monkeypatch):
    from benchmark.data.catalog import load_dataset
    from benchmark.planning.grid import load_grid
    from benchmark.execution.runner import execute_pack

    config = next(r for r in load_grid("smoke").expand() if r.method == "aggressive" and r.dataset.name == "pinwheel")
    seen: list[torch.Tensor] = []
    cls = METHODS["aggressive"]
    monkeypatch.setattr(cls, "held_out_mi", lambda self, held_out: seen.append(held_out.clone()) or 0.0)
    result = execute_pack([config], device="cpu", log=lambda line: None)[0]
    assert result.record.status == "ok" and seen
    data = load_dataset("pinwheel", seed=config.stream_seed("data"), train_size=config.dataset.train_size,
                        test_size=config.dataset.test_size)
    rows = lambda t: {tuple(r) for r in t.tolist()}  # noqa: E731
    held, test, train = rows(seen[0]), rows(data.test.x), rows(data.train.x)
    fraction = config.hyperparameters["valid_fraction"]
    assert len(seen[0]) == round(fraction * config.dataset.train_size)
    assert held <= train and not held & test  # drawn from the training examples, none from the test split
    assert result.record.data["valid"] == {"examples": len(seen[0]), "source": "held out from the training split"}
    assert "validation split" in result.record.method_extras["mi_data"]


def test_block_rule_of_a_pack_stops_each_run_as_it_stops_alone():
    BlockStop = module("aggressive").BlockStop
    runs = [[10.0] * 5 + [9.0] * 5 + [9.5] * 5 + [1.0] * 85,  # alone: 15 steps
            [10.0 - 0.01 * k for k in range(100)],  # alone: the cap, 100... capped at 40 below
            [1e9] * 20 + [2e9] * 80]  # alone: 30
    alone = []
    for losses in runs:
        rule = BlockStop(5, 40)
        while rule.add(torch.tensor(losses[rule.steps]), 4):
            pass
        alone.append(rule.steps)
    pack = BlockStop(5, 40, [True, True, True, False])  # the fourth run is not aggressive: no steps
    while pack.add(torch.tensor([r[pack.steps] for r in runs] + [0.0]), 4):
        pass
    assert alone == [15, 40, 25] and pack.taken == alone + [0] and pack.steps == 40


def test_a_pack_of_aggressive_runs_leaving_aggressive_mode_at_different_epochs_matches_each_run_alone(monkeypatch):
    """Each run of a pack takes its own encoder-only steps (its own block rule), stops being
    aggressive on its own held-out MI, and keeps its own optimiser step counts: its losses, inner
    steps and mode match the run trained alone, and a pack resumed from its state goes on as an
    uninterrupted one."""
    from benchmark.tools.check_method import NOISE, SHAPE, pixels

    held_out = {}  # id(method) -> the held-out MI values it will see, one per epoch
    monkeypatch.setattr(METHODS["aggressive"], "held_out_mi", lambda self, x: held_out[id(self)].pop(0))
    mi = {0: [0.5, 0.4, 0.9, 0.9], 1: [0.5, 0.8, 0.7, 0.9], 2: [0.5, 0.8, 0.9, 1.0]}  # stop after epoch 2, 3, never
    config = TrainConfig(epochs=4, batch_size=16, grad_clip=2.0)

    def trainer(seeds, init=None, epochs_done=0):
        methods = [build("aggressive", seed=i, shape=SHAPE, block=2, max_inner_steps=8) for i in (init or seeds)]
        for m, s in zip(methods, seeds):
            held_out[id(m)] = mi[s][epochs_done:]
        if len(seeds) == 1:
            torch.manual_seed(NOISE + seeds[0])  # alone, a run draws its noise from the global RNG
        return Trainer(methods, [pixels(60, s) for s in seeds], config, [torch.Generator().manual_seed(s) for s in seeds],
                       [pixels(20, 50 + s).float() / 255 for s in seeds],
                       noise=[torch.Generator().manual_seed(NOISE + s) for s in seeds] if len(seeds) > 1 else None)

    pack = trainer([0, 1, 2])
    means = [pack.run_epoch() for _ in range(4)]
    for k in range(3):
        single = trainer([k])
        for epoch in range(4):
            (got,) = single.run_epoch()
            assert got.keys() == means[epoch][k].keys()
            for key, value in got.items():
                assert means[epoch][k][key] == pytest.approx(value, rel=1e-4, abs=1e-5), (k, epoch, key)
        assert pack.methods[k].record_extras() == single.methods[0].record_extras()
    extras = [m.record_extras() for m in pack.methods]
    assert [e["aggressive_stopped_after_epoch"] for e in extras] == [2, 3, None]
    assert len({tuple(e["inner_steps_per_epoch"]) for e in extras}) == 3

    first = trainer([0, 1, 2])
    for _ in range(2):
        first.run_epoch()
    second = trainer([0, 1, 2], init=[30, 40, 50], epochs_done=2)  # other weights: all must come from the state
    second.load_state_dict(first.state_dict())
    assert [m.aggressive for m in second.methods] == [False, True, True]
    assert [second.run_epoch() for _ in range(2)] == means[2:]
