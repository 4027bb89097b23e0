"""Valid values, declared on dataclass fields (benchmark/ranges.py): interval text parses; the core
settings and the architectures' options declare theirs as plugins do; a Literal field's choices are
checked; a declaration mistake in a plugin is a plugin error naming its file."""

from __future__ import annotations

import re

import pytest

from benchmark.discovery import METHODS


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
