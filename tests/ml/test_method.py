"""The method contract (benchmark/ml/method.py): every registered method trains and round-trips its
state, a method's hyperparameters are checked when it is built; and the contract's optional hooks:
training_step with its step tools, on_epoch_end with the held-out split, check_model in the grid
loader, and their state through checkpoints.

(The default path, a method that overrides none of them, is pinned number for number by
tests/planning/test_code_key.py.)
"""

from __future__ import annotations

import inspect
import io
import math

import pytest
import torch

from benchmark.cli import main
from benchmark.config import ModelConfig, TrainConfig
from benchmark.data.splits import to_unit
from benchmark.discovery import METHODS
from benchmark.errors import GridError, UnknownNameError
from benchmark.ml.method import Method, NoHyperparameters, build_method
from benchmark.ml.train import OptimiserTools, Trainer

from toy_methods import SHAPES, build, progress

SHAPE = (1, 6, 6)


MODEL = ModelConfig(latent_dim=3, options={"hidden": [16]})


def model(seed: int = 0):
    torch.manual_seed(seed)
    return build_method("vae", {}, MODEL, SHAPE).model


def pixels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


class DecoderOnly(Method):
    """Takes over the step (the decoder alone is trained) and records its calls."""

    name = "decoder-only-test"

    def __init__(self, config, model_config):
        super().__init__(config, model_config)
        self.steps, self.ends = [], []

    def loss(self, x, progress):
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {"loss": rec + kl, "rec": rec, "kl": kl}

    def training_step(self, x, progress, tools):
        self.steps.append((progress.epoch, progress.step, x.shape[0]))
        parts = self.loss(x, progress)
        tools.step(parts["loss"], self.model.decoder.parameters())
        return parts

    def on_epoch_end(self, epoch, held_out):
        self.ends.append((epoch, held_out))


def decoder_only() -> DecoderOnly:
    method = DecoderOnly(NoHyperparameters(), MODEL)
    method.model = model()
    return method


def test_trainer_hands_each_batch_to_training_step_and_the_held_out_split_to_on_epoch_end():
    method = decoder_only()
    encoder = [p.detach().clone() for p in method.model.encoder.parameters()]
    decoder = [p.detach().clone() for p in method.model.decoder.parameters()]
    held_out = torch.rand(10, *SHAPE)
    trainer = Trainer([method], [pixels(40)], TrainConfig(epochs=2, batch_size=16), [torch.Generator().manual_seed(0)],
                      [held_out])
    while not trainer.done:
        trainer.run_epoch()
    assert method.steps == [(0, 0, 16), (0, 1, 16), (0, 2, 8), (1, 3, 16), (1, 4, 16), (1, 5, 8)]
    assert [e for e, _ in method.ends] == [0, 1] and all(h is held_out for _, h in method.ends)
    assert all(torch.equal(a, b) for a, b in zip(encoder, method.model.encoder.parameters()))
    assert not any(torch.equal(a, b) for a, b in zip(decoder, method.model.decoder.parameters()))
    assert all(p not in trainer.step.optimizer.state for p in method.model.encoder.parameters())


def test_step_tools_fresh_batches_come_from_the_order_generator():
    x = pixels(50)
    method = decoder_only()
    optimizer = torch.optim.Adam(method.parameters())

    def draws(seed: int) -> list[torch.Tensor]:
        tools = OptimiserTools(method, optimizer, TrainConfig(batch_size=12), x, torch.Generator().manual_seed(seed))
        return [tools.fresh_batch() for _ in range(3)]

    first, again, other = draws(1), draws(1), draws(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    rows = {tuple(r.flatten().tolist()): i for i, r in enumerate(to_unit(x))}
    for batch in first:
        assert batch.shape == (12, *SHAPE) and batch.dtype == torch.float32
        index = [rows[tuple(r.flatten().tolist())] for r in batch]
        assert len(set(index)) == 12  # drawn without replacement


def test_step_tools_step_one_subset_leaves_the_others_and_their_optimiser_state():
    method = decoder_only()
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-2)
    tools = OptimiserTools(method, optimizer, TrainConfig(grad_clip=1.0))
    x = torch.rand(8, *SHAPE)
    before = [p.detach().clone() for p in method.model.encoder.parameters()]
    tools.step(method.loss(x, None)["loss"], method.model.decoder.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, method.model.encoder.parameters()))
    assert all(int(optimizer.state[p]["step"]) == 1 for p in method.model.decoder.parameters())
    tools.step(method.loss(x, None)["loss"])  # every parameter
    assert all(int(optimizer.state[p]["step"]) == 1 for p in method.model.encoder.parameters())
    assert all(int(optimizer.state[p]["step"]) == 2 for p in method.model.decoder.parameters())


def test_a_method_with_its_own_step_and_state_resumes_from_a_checkpoint_exactly():
    """aggressive: inner-loop optimiser state, fresh-batch draws and its per-epoch bookkeeping
    (get_extra_state) survive Trainer.state_dict, as the runner's checkpoints use it."""
    config = ModelConfig(latent_dim=3, options={"hidden": [16]})
    hp = {"block": 2, "max_inner_steps": 5}
    x, held_out, train = pixels(48), torch.rand(20, *SHAPE), TrainConfig(epochs=3, batch_size=16)

    def fresh(seed: int):
        torch.manual_seed(seed)
        method = build_method("aggressive", hp, config, SHAPE)
        return method, Trainer([method], [x], train, [torch.Generator().manual_seed(7)], [held_out])

    straight, trainer = fresh(0)
    torch.manual_seed(11)
    while not trainer.done:
        trainer.run_epoch()
    resumed, first = fresh(0)
    torch.manual_seed(11)
    first.run_epoch()
    state, rng = first.state_dict(), torch.get_rng_state()
    resumed, second = fresh(5)  # other initial weights: everything must come from the checkpoint
    second.load_state_dict(state)
    torch.set_rng_state(rng)
    while not second.done:
        second.run_epoch()
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert resumed.record_extras() == straight.record_extras()
    assert len(straight.record_extras()["inner_steps_per_epoch"]) == 3


def write_grid(tmp_path, method: str, model: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(f'''
[train]
epochs = 1
batch_size = 32
[model]
{model}
latent_dim = 2
[[datasets]]
name = "pinwheel"
train_size = 64
[[methods]]
name = "vae"
[[methods]]
name = "{method}"
''')
    return str(path)


def test_grid_loader_refuses_a_method_on_a_model_it_does_not_apply_to(tmp_path, capsys):
    for method, model_table, message in [
        ("skip-vae", "hidden = []", "give it hidden layers"),
        ("delta-vae", 'posterior_variance = "softplus-logvar"', 'use "logvar"'),
    ]:
        code = main(["run", "--grid", write_grid(tmp_path, method, model_table), "--results", str(tmp_path / "r"),
                     "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: grid file")
        assert f"field `methods[1]`: {method} does not apply to the model of datasets[0]" in err and message in err
        assert not (tmp_path / "r").exists()  # refused before anything ran


def test_list_methods_says_where_a_method_applies(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    skip_vae = out.split("\n  skip-vae", 1)[1].splitlines()
    assert skip_vae[1].strip().startswith("requires: arch mlp, mlp-shallow, mlp-deep, conv, conv28, conv64")
    assert "requires: latent_dim divisible by group_size" in out
    assert "\n  vae" in out and "requires" not in out.split("\n  vae", 1)[1]  # applies everywhere: no line


PACKED_STEP = '''
from benchmark.plugin import Method, register_method


@register_method
class PackedStep(Method):
    """Declares packable and takes over the step: a pack would never call the step."""

    name = "packed-step"
    packable = True

    def loss(self, x, progress):
        out = self.model(x)
        return {"loss": out.rec.mean(), "rec": out.rec.mean(), "kl": out.kl.mean()}

    def HOOK(self, *args):
        return super().HOOK(*args)
'''


@pytest.mark.parametrize("hook", ["training_step", "on_epoch_end"])
def test_packable_with_its_own_step_or_epoch_end_is_a_plugin_error(plugin_dir, capsys, hook):
    """Packs run the default training_step and on_epoch_end: the override is refused, not dropped."""
    folder = plugin_dir({"packed_step.py": PACKED_STEP.replace("HOOK", hook)})
    assert main(["list", "methods"]) == 2
    err = capsys.readouterr().err
    assert str(folder / "packed_step.py") in err and f"packable = True and overrides {hook}" in err
    assert f"drop packable = True or the {hook} override" in err


def test_every_hook_is_an_instance_method_and_the_method_exists_before_its_model():
    from benchmark.discovery import METHODS
    from benchmark.ml.method import HOOKS

    for name, cls in METHODS.items():
        method = cls(cls.Config(), MODEL)
        assert "model" not in method._modules and method.model_config is MODEL
        for hook in HOOKS:
            assert not isinstance(inspect.getattr_static(cls, hook), (classmethod, staticmethod)), (name, hook)


@pytest.mark.parametrize("kind", SHAPES)
@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_and_round_trips_its_state(name, kind, tmp_path):
    method = build(name, kind)
    x = torch.rand(8, *SHAPES[kind][0])
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
    for step in range(2):
        parts = method.loss(x, progress(step, 2))
        assert {"loss", "rec", "kl"} <= set(parts)
        assert all(math.isfinite(float(torch.as_tensor(v).detach())) for v in parts.values())
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    fresh = build(name, kind, seed=1)
    fresh.load_state_dict(torch.load(buffer))
    method.eval(), fresh.eval()
    z = torch.randn(5, SHAPES[kind][1])
    with torch.no_grad():
        torch.testing.assert_close(fresh.model.encode(x), method.model.encode(x), rtol=0, atol=0)
        torch.testing.assert_close(fresh.model.decode(z), method.model.decode(z), rtol=0, atol=0)
    assert fresh.record_extras() == method.record_extras()


@pytest.mark.parametrize("name, hyperparameters, error, message", [
    ("lr-vae", {"z_source": "data"}, GridError, "hyperparameter z_source: 'data' is not a valid choice; valid: 'prior', 'posterior', 'posterior-mean'"),
    ("lr-vae", {"stop_gradient": "both"}, GridError, "valid: 'none', 'z', 'decoded'"),
    ("lr-vae", {"num_samples": 0}, GridError, "num_samples"),
    ("lr-vae", {"alpha_schedule": "cosine"}, UnknownNameError, "unknown schedule 'cosine'"),
    ("lr-vae", {"alpha_schedule_options": {"cycles": 2}}, GridError, "no option 'cycles'"),
    ("il-lid-vae", {"il_split": "cube"}, GridError, "valid: 'sqrt', 'per-map'"),
    ("il-lid-vae", {"L": -1.0}, GridError, r"L: -1.0 is outside the valid range \[0, inf\)"),
    ("il-lid-vae", {"L_schedule": "decay"}, GridError, "start"),
])
def test_bad_hyperparameters_are_reported(name, hyperparameters, error, message):
    with pytest.raises(error, match=message):
        build(name, **hyperparameters)


def test_build_method_refuses_a_value_outside_its_choices():
    from benchmark.config import ModelConfig
    from benchmark.ml.method import build_method

    with pytest.raises(GridError, match="info-vae: hyperparameter kernel: 'rbf' is not a valid choice; valid: "
                                        "'gaussian', 'imq'"):
        build_method("info-vae", {"kernel": "rbf"}, ModelConfig(latent_dim=2, options={"hidden": [4]}), (2,))
