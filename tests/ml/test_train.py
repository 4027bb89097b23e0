"""The training loop (benchmark/ml/train.py) on sentences: length-bucketed batches, the plateau
schedule with model selection, the validation -ELBO."""

from __future__ import annotations

import pytest
import torch

from benchmark.config import TrainConfig
from benchmark.ml.sequence import lengths_of
from benchmark.ml.train import Trainer, length_buckets, validation_neg_elbo

from text_methods import build, sentences


def test_length_buckets_cover_every_sentence_once_in_batches_of_near_equal_length():
    lengths = torch.randint(3, 40, (1000,), generator=torch.Generator().manual_seed(0))
    batches = length_buckets(lengths, 32, torch.Generator().manual_seed(1))
    assert sorted(torch.cat(batches).tolist()) == list(range(1000))
    assert all(len(b) >= 2 for b in batches) and sum(len(b) != 32 for b in batches) <= 1
    ranges = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in batches)
    assert all(high <= next_low for (_, high), (next_low, _) in zip(ranges, ranges[1:]))  # slices of the sorted order
    again = length_buckets(lengths, 32, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))


def test_plateau_schedule_decays_reloads_the_best_weights_and_stops(monkeypatch):
    import benchmark.ml.train as train

    method = build("vae")
    x, held = sentences(32), sentences(8, seed=1)
    values = iter([5.0, 4.0, 4.5, 4.6, 4.7, 3.0, 3.5, 3.6])
    monkeypatch.setattr(train, "validation_neg_elbo", lambda *a, **k: next(values))
    config = TrainConfig(epochs=20, batch_size=8, optimizer="sgd", lr=1.0, lr_schedule="plateau", decay_start=2,
                         decay_patience=2, max_decays=2, select_best=True)
    trainer = Trainer([method], [x], config, [torch.Generator().manual_seed(0)], [held],
                      lengths=lengths_of(x))
    logged = []
    while not trainer.done:
        logged.append(trainer.run_epoch()[0])
    assert [m["lr"] for m in logged] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]
    assert trainer.epoch == 8 and trainer.plateau.stopped  # after max_decays decays
    extras = trainer.finish()
    assert extras["selected_epoch"] == 6 and extras["lr_decays"] == 2
    assert validation_neg_elbo is not train.validation_neg_elbo  # (the real one is tested below)


def test_model_selection_keeps_a_methods_extra_state_that_is_not_a_tensor(monkeypatch):
    # aggressive keeps a dict in get_extra_state; select_best once failed copying it ('dict' has no detach)
    import benchmark.ml.train as train

    method = build("aggressive")
    x, held = sentences(32), sentences(8, seed=1)
    values = iter([5.0, 4.0])
    monkeypatch.setattr(train, "validation_neg_elbo", lambda *a, **k: next(values))
    config = TrainConfig(epochs=2, batch_size=8, select_best=True)
    trainer = Trainer([method], [x], config, [torch.Generator().manual_seed(0)], [held], lengths=lengths_of(x))
    while not trainer.done:
        trainer.run_epoch()
    assert trainer.finish()["selected_epoch"] == 2
    extra = [v for k, v in trainer.plateau.best_state.items() if k.endswith("_extra_state")]
    assert extra and all(not isinstance(v, torch.Tensor) for v in extra)


def test_validation_neg_elbo_is_the_mean_negative_elbo_of_the_held_out_sentences():
    method = build("vae")
    held = sentences(8)
    value = validation_neg_elbo(method, held, torch.Generator().manual_seed(0))
    model = method.model.eval()
    with torch.no_grad():
        mu, logvar = model.encode(held)
        g = torch.Generator().manual_seed(0)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
        expected = float((0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1) - model.log_likelihood(held, z[None])[0]).mean())
    assert value == pytest.approx(expected, rel=1e-5)
    assert method.training  # its mode restored


def _train_images(precision: str, method_name: str = "vae", packed: bool = False) -> tuple[list, list]:
    """Three epochs of a small image model (or a pack of two) in ``precision``: its parameters and
    each epoch's mean loss per run."""
    from toy_methods import build as build_image

    methods = [build_image(method_name, "image", seed=s) for s in ((0, 1) if packed else (0,))]
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    config = TrainConfig(epochs=3, batch_size=16, precision=precision)
    noise = [torch.Generator().manual_seed(10 + k) for k in range(len(methods))] if packed else None
    trainer = Trainer(methods, [x] * len(methods), config, [torch.Generator().manual_seed(k) for k in range(len(methods))],
                      noise=noise)
    torch.manual_seed(5)
    losses = []
    while not trainer.done:
        means = trainer.run_epoch()
        assert all(m is not None and all(torch.isfinite(torch.tensor(v)) for v in m.values()) for m in means)
        losses.append([m["loss"] for m in means])
    return [p.detach().clone() for m in methods for p in m.parameters()], losses


@pytest.mark.parametrize("packed", [False, True])
def test_bf16_trains_in_autocast_as_far_as_fp32_with_fp32_parameters(packed):
    (fp32, fp32_losses), (bf16, bf16_losses) = _train_images("fp32", packed=packed), _train_images("bf16", packed=packed)
    assert all(p.dtype == torch.float32 for p in bf16)
    assert max(float((a - b).abs().max()) for a, b in zip(fp32, bf16)) > 0  # the forward pass really ran in bfloat16
    for run in range(len(fp32_losses[0])):  # every epoch's loss within 1% of fp32's: the weights did move each step
        first, last = fp32_losses[0][run], fp32_losses[-1][run]
        assert last < first - 1.0
        assert all(abs(b[run] - a[run]) < 0.01 * abs(a[run]) for a, b in zip(fp32_losses, bf16_losses))
    assert _train_images("fp32", packed=packed)[0][0].equal(fp32[0])  # fp32 is deterministic, autocast left no trace


def test_training_precision_restores_the_tf32_flags():
    from benchmark.ml.precision import training_precision

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with training_precision("tf32", torch.device("cpu")):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    with training_precision("fp32", torch.device("cpu")):
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert not torch.is_autocast_enabled("cpu")
    with training_precision("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
