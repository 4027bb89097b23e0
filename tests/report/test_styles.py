"""How methods look in the report's figures (benchmark/report/styles.py): each built-in method's
fixed colour, marker and line style, and plugins that never look like another method."""

from __future__ import annotations

from benchmark.report.styles import BUILTIN, METHOD_STYLES, PLUGIN_PAIRS, method_style, plugin_methods


def test_builtin_methods_have_fixed_distinct_styles():
    assert set(BUILTIN) == {"vae", "beta-vae", "lid-vae", "il-lid-vae", "lr-vae", "aggressive", "bn-vae", "cyclical",
                            "delta-vae", "free-bits", "info-vae", "kl-annealing", "skip-vae", "lstm-lm"}
    styles = [METHOD_STYLES[m] for m in BUILTIN]
    assert len({s.colour for s in styles}) == len({s.marker for s in styles}) == len(BUILTIN)
    with plugin_methods(["a-plugin", *BUILTIN]):
        assert [method_style(m) for m in BUILTIN] == styles  # whatever else is drawn


def test_plugins_never_look_like_another_method():
    builtin = {(s.colour, s.marker) for s in METHOD_STYLES.values()}
    plugins = [f"plugin-{i:03d}" for i in range(len(PLUGIN_PAIRS))]
    with plugin_methods([*plugins, "vae"]):
        pairs = [method_style(m)[:2] for m in plugins]
        assert method_style("plugin-005") == method_style("plugin-005")
        assert method_style("not-in-the-report")[:2] not in builtin
    assert len(set(pairs)) == len(plugins) and not set(pairs) & builtin
    assert all(method_style(m).linestyle != "-" for m in plugins)
    with plugin_methods(["b-plugin", "a-plugin"]):  # by sorted name: the same for the same methods
        first = method_style("a-plugin"), method_style("b-plugin")
    with plugin_methods(["a-plugin", "b-plugin", "beta-vae"]):
        assert (method_style("a-plugin"), method_style("b-plugin")) == first
    assert first[0][:2] != first[1][:2]
