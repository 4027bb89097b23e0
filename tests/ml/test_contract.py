"""What a method promises the training loop, checked: loss parts that break the contract are named
(alone and packed), and a pack whose runs would share Python state is refused, its runs then
trained alone."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark.cli import main
from benchmark.config import TrainConfig
from benchmark.ml.contract import LossContractError, check_parts
from benchmark.ml.method import build_method
from benchmark.ml.pack import PackRefused, StackedMethods
from benchmark.ml.train import Trainer
from benchmark.tools.check_method import MODEL, SHAPE, pixels

PLUGIN = '''
from dataclasses import dataclass
import torch
from benchmark.plugin import Method, register_method, setting


@dataclass
class Config:
    beta: float = setting(1.0, doc="weight of the KL term")


@register_method
class Plugin(Method):
    """A test method."""

    name = "{name}"
    packable = True
    pack_scalars = ("beta",)
    Config = Config

    def __init__(self, config, model):
        super().__init__(config, model)
        {init}

    def loss(self, x, progress):
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        {body}
'''
# __init__ derives state from a pack scalar: in a pack every run would train at run 0's beta
DERIVED = PLUGIN.format(name="derived-beta", init="self.weight = 2.0 * float(config.beta)",
                        body='return {"loss": rec + self.weight * kl, "rec": rec, "kl": kl}')
# the loss changes the method's Python state: in a pack the runs would share one counter
COUNTING = PLUGIN.format(name="counting", init="self.calls = 0",
                         body='self.calls += 1\n        return {"loss": rec + kl, "rec": rec, "kl": kl, '
                              '"calls": float(self.calls)}')
# the KL part per example, not averaged over the batch
PER_EXAMPLE = PLUGIN.format(name="per-example-kl", init="pass",
                            body='return {"loss": rec + kl, "rec": rec, "kl": out.kl}')


def grid(tmp_path, method: str, betas: str = "[1.0]", seeds: str = "[0, 1]") -> str:
    path = tmp_path / "contract.toml"
    path.write_text(f'''
seeds = {seeds}
[train]
epochs = 2
batch_size = 32
[model]
hidden = [16]
latent_dim = 2
[eval]
nll_samples = 4
nll_examples = 16
geometry_points = 2
noise_points = 2
noise_draws = 2
[[datasets]]
name = "pinwheel"
train_size = 96
test_size = 32
[[methods]]
name = "{method}"
beta = {betas}
''')
    return str(path)


def run(grid_file: str, results, *extra: str, status: int = 0) -> dict[str, dict]:
    assert main(["run", "--grid", grid_file, "--results", str(results), "--device", "cpu", "--threads", "1",
                 *extra]) == status
    return {r["run_id"]: r for r in (json.loads(p.read_text()) for p in (results / "contract" / "runs").glob("*.json"))}


def build(name: str, hp: dict, seed: int):
    torch.manual_seed(seed)
    return build_method(name, hp, MODEL, SHAPE)


def test_a_pack_of_runs_whose_python_state_differs_is_refused(plugin_dir):
    plugin_dir({"derived.py": DERIVED})
    with pytest.raises(PackRefused, match=r"run 1's method differs from run 0's in self.weight \(1.0 vs 4.0\)"):
        StackedMethods([build("derived-beta", {"beta": b}, 0) for b in (0.5, 2.0)], [torch.Generator()] * 2)
    StackedMethods([build("derived-beta", {"beta": 0.5}, s) for s in (0, 1)], [torch.Generator()] * 2)  # one beta


def test_a_loss_that_changes_the_python_state_is_refused_in_the_packs_first_step(plugin_dir):
    plugin_dir({"counting.py": COUNTING})
    methods = [build("counting", {}, s) for s in (0, 1)]
    trainer = Trainer(methods, [pixels(32, s) for s in (0, 1)], TrainConfig(epochs=1, batch_size=16),
                      [torch.Generator().manual_seed(s) for s in (0, 1)])
    with pytest.raises(PackRefused, match=r"counting.loss changed its Python state, self.calls \(0 vs 2\)"):
        trainer.run_epoch()


@pytest.mark.parametrize("source,name,betas", [(DERIVED, "derived-beta", "[0.5, 2.0]"), (COUNTING, "counting", "[1.0]")])
def test_runs_refused_as_a_pack_train_alone_and_the_reason_is_logged_once(tmp_path, plugin_dir, capsys, source,
                                                                          name, betas):
    plugin_dir({"plugin.py": source})
    found = run(grid(tmp_path, name, betas), tmp_path / "r", "--pack", "4", "--retries", "0")
    err = capsys.readouterr().err
    assert len(found) == (4 if betas != "[1.0]" else 2)
    assert all(r["status"] == "ok" and "pack" not in r and r["attempt"] == 1 for r in found.values())
    assert err.count("rerunning each alone") == 1 and "PackRefused" not in err
    assert ("self.weight" if name == "derived-beta" else "self.calls") in err


@pytest.mark.parametrize("pack", ["1", "2"])
def test_a_loss_part_of_the_wrong_shape_is_named_in_the_record(tmp_path, plugin_dir, pack):
    plugin_dir({"per_example.py": PER_EXAMPLE})
    found = run(grid(tmp_path, "per-example-kl"), tmp_path / "r", "--pack", pack, "--retries", "0", status=1)
    assert len(found) == 2
    for record in found.values():
        assert record["status"] == "failed" and record["error"]["type"] == "LossContractError"
        assert record["error"]["message"] == ("per-example-kl.loss returned 'kl' of shape [32]; every part must be "
                                              "a scalar (mean over the batch)")


def test_the_contract_names_missing_parts_wrong_dtypes_and_non_scalar_extras():
    scalar = torch.zeros(())
    check_parts("m", {"loss": scalar, "rec": scalar, "kl": scalar, "beta": 0.5, "extra": scalar})
    cases = [({"loss": scalar, "kl": scalar}, "m.loss returned no 'rec'"),
             ({"loss": scalar, "rec": scalar, "kl": torch.zeros((), dtype=torch.long)}, "'kl' of dtype torch.int64"),
             ({"loss": scalar, "rec": 1.0, "kl": scalar}, "'rec' as a float; it must be a tensor"),
             ({"loss": scalar, "rec": scalar, "kl": scalar, "mmd": torch.zeros(2)}, "'mmd' of shape [2]"),
             ((scalar, scalar), "returned a tuple")]
    for parts, message in cases:
        with pytest.raises(LossContractError, match=message.replace("[", r"\[").replace("]", r"\]")):
            check_parts("m", parts)
