"""Grid files: parsing, validation and expansion into resolved run configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.config import RunConfig
from benchmark.errors import GridError, UnknownNameError
from benchmark.planning.grid import check_type, grid_names, load_grid
from benchmark.discovery import METHODS

BASE = '''
seeds = [0, 1]
[train]
epochs = 3
batch_size = 50  # a batch within the 100 training examples
[model]
hidden = [32]
latent_dim = 4
[[datasets]]
name = "pinwheel"
train_size = 100
'''


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "g.toml"
    path.write_text(text)
    return path


def test_named_grids_load_and_expand():
    assert {"smoke", "quick"} <= set(grid_names())
    for name in grid_names():
        runs = load_grid(name).expand()
        assert runs and len({r.run_id for r in runs}) == len(runs)


def test_smoke_covers_every_registered_method():
    runs = load_grid("smoke").expand()
    assert {r.method for r in runs} == set(METHODS.names())
    assert all(r.train.epochs <= 2 for r in runs)


def test_sweep_is_a_cartesian_product_in_a_fixed_order(tmp_path):
    grid = load_grid(write(tmp_path, BASE + '[[methods]]\nname = "vae"\n[[methods]]\nname = "beta-vae"\nbeta = [0.5, 2]\n'))
    runs = grid.expand()
    assert [(r.method, r.hyperparameters, r.seed) for r in runs] == [
        ("vae", {}, 0), ("vae", {}, 1),
        ("beta-vae", {"beta": 0.5}, 0), ("beta-vae", {"beta": 0.5}, 1),
        ("beta-vae", {"beta": 2.0}, 0), ("beta-vae", {"beta": 2.0}, 1)]
    assert [r.run_id for r in runs] == [r.run_id for r in grid.expand()]  # deterministic
    run = runs[0]
    assert run.train.epochs == 3 and run.model.options == {"hidden": [32], "activation": "relu"}
    assert run.dataset.train_size == 100 and run.dataset.test_size is None


def test_defaults_are_resolved_and_int_becomes_float(tmp_path):
    runs = load_grid(write(tmp_path, BASE + '[[methods]]\nname = "beta-vae"\n[[methods]]\nname = "beta-vae"\nbeta = 4\n')).expand()
    assert len(runs) == 2  # beta = 4 equals the default 4.0: same config, same run, listed once
    assert runs[0].hyperparameters == {"beta": 4.0}


def test_run_id_is_a_stable_hash_of_the_resolved_config(tmp_path):
    run = load_grid(write(tmp_path, BASE + '[[methods]]\nname = "beta-vae"\nbeta = 0.5\n')).expand()[0]
    again = RunConfig.from_dict(run.to_dict())
    assert again.run_id == run.run_id and len(run.run_id) == 16
    again.hyperparameters["beta"] = 0.25
    assert again.run_id != run.run_id
    again = RunConfig.from_dict(run.to_dict())
    again.train.lr = 1e-4
    assert again.run_id != run.run_id


def test_stream_seeds(tmp_path):
    runs = load_grid(write(tmp_path, BASE + '[[methods]]\nname = "vae"\n[[methods]]\nname = "beta-vae"\n')).expand()
    vae0, vae1, beta0 = runs[0], runs[1], runs[2]
    assert len({vae0.stream_seed(s) for s in ("init", "order", "train", "eval")}) == 4
    assert vae0.stream_seed("init") != beta0.stream_seed("init") != vae1.stream_seed("init")
    # every method of one seed sees the same data subset; another seed sees other data
    assert vae0.stream_seed("data") == beta0.stream_seed("data") != vae1.stream_seed("data")


def test_overrides_per_dataset_and_method(tmp_path):
    text = BASE.replace('train_size = 100', 'train_size = 100\nmodel = {latent_dim = 6}') + \
        '[[methods]]\nname = "vae"\ntrain = {epochs = 7}\nmodel = {hidden = [8, 8]}\n'
    run = load_grid(write(tmp_path, text)).expand()[0]
    assert run.model.latent_dim == 6 and run.model.options["hidden"] == [8, 8] and run.train.epochs == 7


def test_filters_seeds_and_epochs(tmp_path):
    grid = load_grid(write(tmp_path, BASE + '[[datasets]]\nname = "chessboard"\n[[methods]]\nname = "vae"\n[[methods]]\nname = "beta-vae"\n'))
    assert len(grid.expand()) == 8
    runs = grid.expand(methods=["vae"], datasets=["chessboard"], seeds=[5, 6, 7], epochs=1)
    assert [(r.method, r.dataset.name, r.seed, r.train.epochs) for r in runs] == [
        ("vae", "chessboard", s, 1) for s in (5, 6, 7)]
    with pytest.raises(UnknownNameError, match="valid methods: .*beta-vae"):
        grid.expand(methods=["nope"])
    with pytest.raises(UnknownNameError, match="valid datasets: .*pinwheel"):
        grid.expand(datasets=["nope"])


def test_unknown_grid_name_lists_grids():
    with pytest.raises(UnknownNameError, match="valid grids: .*quick.*smoke"):
        load_grid("no-such-grid")


@pytest.mark.parametrize("text, field", [
    (BASE + '[[methods]]\nname = "vae"\nbeta = 2\n', "methods[0].beta"),
    (BASE + '[[methods]]\nname = "beta-vae"\nbeta = "big"\n', "methods[0].beta"),
    (BASE + '[[methods]]\nname = "beta-vae"\ngamma = 1\n', "methods[0].gamma"),
    (BASE + '[[methods]]\nname = "nope"\n', "methods[0].name"),
    (BASE + '[[methods]]\nnam = "vae"\n', "methods[0]"),
    (BASE.replace('"pinwheel"', '"nope"') + '[[methods]]\nname = "vae"\n', "datasets[0].name"),
    (BASE.replace('train_size = 100', 'train_sise = 100') + '[[methods]]\nname = "vae"\n', "datasets[0].train_sise"),
    (BASE.replace('epochs = 3', 'epochs = 3.5') + '[[methods]]\nname = "vae"\n', "train.epochs"),
    (BASE.replace('epochs = 3', 'epoch = 3') + '[[methods]]\nname = "vae"\n', "train.epoch"),
    (BASE.replace('hidden = [32]', 'hidden = 32') + '[[methods]]\nname = "vae"\n', "model.hidden"),
    (BASE.replace('hidden = [32]', 'widths = [32]') + '[[methods]]\nname = "vae"\n', "model.widths"),
    (BASE.replace('latent_dim = 4', 'likelihood = "poisson"') + '[[methods]]\nname = "vae"\n', "model.likelihood"),
    (BASE.replace('seeds = [0, 1]', 'seeds = "0"') + '[[methods]]\nname = "vae"\n', "seeds"),
    (BASE + '[[methods]]\nname = "*"\nbeta = 2\n', "methods[0]"),
    (BASE, "methods"),
    ('colour = "red"\n' + BASE + '[[methods]]\nname = "vae"\n', "colour"),
])
def test_malformed_grid_names_file_and_field(tmp_path, text, field):
    path = write(tmp_path, text)
    with pytest.raises(GridError) as info:
        load_grid(path).expand()
    assert str(path) in str(info.value) and f"`{field}`" in str(info.value)


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "seeds = [0,\n")
    with pytest.raises(GridError, match=f"{path}.*not valid TOML"):
        load_grid(path)


def test_missing_grid_file(tmp_path):
    with pytest.raises(GridError, match="does not exist"):
        load_grid(tmp_path / "absent.toml")


def test_check_type():
    assert check_type(3, float) == 3.0 and isinstance(check_type(3, float), float)
    assert check_type([1, 2], list[int]) == [1, 2]
    assert check_type(None, int | None) is None
    for value, tp in ((True, int), (1.5, int), ("a", float), ([1.5], list[int]), (1, str)):
        with pytest.raises(TypeError):
            check_type(value, tp)


@pytest.mark.parametrize("value, message", [("-1", "outside the valid range [0, inf)"), ("nan", "not a finite number"),
                                            ("inf", "not a finite number")])
def test_hyperparameter_outside_its_declared_range_is_a_grid_error(tmp_path, value, message):
    grid = load_grid(write(tmp_path, BASE + f'[[methods]]\nname = "beta-vae"\nbeta = {value}\n'))
    with pytest.raises(GridError, match=r"field `methods\[0\]\.beta`: beta-vae: .*" + message.replace("[", r"\[").replace(")", r"\)")):
        grid.expand()


def test_a_literal_hyperparameter_outside_its_choices_is_a_grid_error_naming_them(tmp_path):
    grid = load_grid(write(tmp_path, BASE + '[[methods]]\nname = "free-bits"\nhinge = "sample"\n'))
    with pytest.raises(GridError, match=r"field `methods\[0\]\.hinge`: free-bits: 'sample' is not a valid choice; "
                                        r"valid: 'batch', 'example'"):
        grid.expand()


def test_field_problems_checks_literal_choices():
    """The one generic check (plugins no longer re-check their Literal fields in __post_init__)."""
    from benchmark.ranges import field_problems

    assert field_problems(METHODS["free-bits"].Config(hinge="sample")) == [
        ("hinge", "'sample' is not a valid choice; valid: 'batch', 'example'")]
    assert field_problems(METHODS["lr-vae"].Config(z_source="posterior")) == []


PLUGIN = ('from dataclasses import dataclass\nfrom benchmark.plugin import Method, register_method, setting\n\n'
          '@dataclass\nclass C:\n    """A weight."""\n    w: FIELD\n\n'
          '@register_method\nclass M(Method):\n    name = "declared"\n    Config = C\nEXTRA'
          '    def loss(self, x, progress):\n        return {}\n')


@pytest.mark.parametrize("field, extra, message", [
    ('float = setting(1.0, "a weight")', "", r"range 'a weight' is not an interval"),
    ('float = setting(1.0, doc="[0, 1]")', "", r"doc '\[0, 1\]' is a range; pass it as `valid`"),
    ('str = setting("a", "[0, 1]", doc="a name")', "", r"C\.w: a range on a field of type <class 'str'>"),
    ("float = 1.0", "", r"C\.w has no doc; declare it as w: T = setting\(default"),
    ('float = setting(1.0, doc="a weight")', '    ranges = {"w": "[0, 1]"}\n', r"M\.ranges is no longer part"),
    ('float = setting(1.0, doc="a weight")', "    @classmethod\n    def check_model(cls):\n        return None\n",
     r"M\.check_model must be an instance method"),
])
def test_a_declaration_mistake_is_a_plugin_error_naming_the_file(plugin_dir, capsys, field, extra, message):
    from benchmark.cli import main

    folder = plugin_dir({"declared.py": PLUGIN.replace("FIELD", field).replace("EXTRA", extra)})
    assert main(["list", "methods"]) == 2
    err = capsys.readouterr().err
    assert str(folder / "declared.py") in err and re.search(message, err), err
    assert len(err.strip().splitlines()) == 1, err


def test_interval_parsing():
    from benchmark.ranges import Interval

    assert str(Interval.parse("(0, 1]")) == "(0, 1]" and 1 in Interval.parse("(0, 1]") and 0 not in Interval.parse("(0, 1]")
    assert 5 in Interval.parse("[1, inf)") and float("inf") not in Interval.parse("[1, inf)")
    for bad in ("0..1", "[1, 0]", "[a, 1]"):
        with pytest.raises(ValueError):
            Interval.parse(bad)


def test_the_core_settings_are_declared_as_plugins_declare_theirs():
    """The grid's own sections and the architectures' options use the same setting(): every range
    parses and sits on a numeric field; every method's Config passed register_method's checks."""
    from benchmark.config import DatasetConfig, EvalConfig, ModelConfig, TrainConfig
    from benchmark.ml.archs import ARCHS
    from benchmark.ranges import declaration_problems

    for cls in (DatasetConfig, ModelConfig, TrainConfig, EvalConfig, *(ARCHS[name] for name in ARCHS.names())):
        assert declaration_problems(cls) == [], cls.__name__
    for name, cls in METHODS.items():
        assert declaration_problems(cls.Config, doc_required=True) == [], name
