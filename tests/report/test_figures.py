"""The report's figures (benchmark/report/figures*.py) lay out for their content: a report of many
methods (plugins among them), long settings and two architectures, every figure checked with
:func:`layout_problems` (panels not squeezed, no text overlapping or cut; the check itself:
tests/report/test_layout.py); labels with display names, architectures as panels; AU drawn as a
count of the d latent dims (as the tables show it), never as a fraction. (Each method's colour,
marker and line style: tests/report/test_styles.py.)"""

from __future__ import annotations

import pytest

from benchmark.report import figures
from benchmark.report.build import build_report
from benchmark.report.layout import layout_problems, text_boxes
from fake_records import D, GRID, record, run_id, write_records

ARCHS = ("mlp-shallow", "conv-deep-residual")
PLUGINS = ("zz-remedy-from-a-plugin", "another-plugin")
# (method, hyperparameters) of every setting: 13 built-in methods and two plugins, some settings long;
# one setting per method where a sweep is not needed (a full report of these takes about a minute)
SETTINGS = [("vae", ())] + [("beta-vae", (("beta", b),)) for b in (0.1, 1.0, 4.0)] + [
    ("lr-vae", (("alpha_T", a), ("beta", b))) for a, b in ((0.5, 0.2), (1.0, 0.2), (1.0, 1.0))] + [
    ("lid-vae", (("L", 0.5),)), ("il-lid-vae", (("L", 0.5), ("beta", 1.0))),
    ("kl-annealing", (("schedule", "linear-then-constant-with-restarts"), ("warmup_epochs", 10))),
    ("cyclical", (("beta_max", 1.0), ("cycles", 4))), ("free-bits", (("lam", 0.25),)), ("delta-vae", (("delta", 0.1),)),
    ("bn-vae", (("gamma", 0.5),)), ("aggressive", (("max_aggressive_epochs", 5),)),
    ("info-vae", (("alpha", 0.0), ("lam", 1000.0))), ("skip-vae", (("beta", 1.0),))] + [
    (PLUGINS[0], (("an_unusually_long_hyperparameter_name", v),)) for v in ("a-long-text-value", "another-one")] + [
    (PLUGINS[1], (("beta", 0.5),))]
IMAGES = {"vae", "beta-vae", "lr-vae"}  # methods whose records hold stored images (keeps the report small)
NOISE = {"vae", "lr-vae", "free-bits", PLUGINS[0]}


def many_record(method: str, hp: tuple, arch: str, seed: int) -> dict:
    """A record of ``method`` with ``hp`` under ``arch`` (fake_records.record's, metrics varied by the setting)."""
    r = record(method, hp, seed)
    r["run_id"] = run_id(method, hp + (arch,), seed)
    r["config"]["model"]["arch"] = arch
    au = int(r["run_id"][:2], 16) % 5 / 4
    r["metrics"].update(au=au, au_count=round(au * 4), kl=2.0 + 10 * au + seed, mi=1.0 + 3 * au, rec=30.0 - 10 * au)
    r["per_class"]["au"] = {str(c): min(1.0, au + 0.05 * c) for c in range(3)}
    r["curves"] = [{**p, "test_au": min(1.0, au + 0.1 * (3 - p["epoch"]))} for p in r["curves"]]
    for p in r["curves"]:
        p["test_au_count"] = round(p["test_au"] * D)
    if method not in IMAGES:
        r.pop("artifacts")
    if method not in NOISE:
        r.pop("noise")
    return r


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """A report of :data:`SETTINGS` under both architectures (2 seeds): every figure's layout
    problems, tick labels and legend entries, by (kind, data set)."""
    results = tmp_path_factory.mktemp("many") / "results"
    write_records(results / GRID / "runs", [many_record(m, hp, arch, seed) for m, hp in SETTINGS for arch in ARCHS
                                            for seed in (0, 1)])
    found: dict[tuple[str, str], dict] = {}

    def check(fig, figure) -> None:
        legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        legends += [t.get_text() for sub in [fig, *fig.subfigs, *(s for f in fig.subfigs for s in f.subfigs)]
                    for legend in sub.legends for t in legend.get_texts()]
        found[(figure.kind, figure.dataset)] = {"problems": layout_problems(fig), "legends": legends,
                                                "texts": [box.what for box in text_boxes(fig)],
                                                "au": au_axes(fig)}

    figures.RENDER_HOOKS.append(check)
    try:
        code, message = build_report(results, tmp_path_factory.mktemp("out"))
    finally:
        figures.RENDER_HOOKS.remove(check)
    assert code == 0, message
    return found


def au_axes(fig) -> list[dict]:
    """Every axis of ``fig`` whose label names AU or active units: its label, view limits, the tick
    locations within them and the values drawn along it (lines, dots; a heat map's cells)."""
    import numpy as np

    found = []
    for ax in fig.get_axes():  # the axes of subfigures too
        for name, axis, lim, column in (("x", ax.xaxis, ax.get_xlim(), 0), ("y", ax.yaxis, ax.get_ylim(), 1)):
            label = axis.get_label_text().replace("\n", " ")
            if "AU" not in label and "active units" not in label:
                continue
            low, high = sorted(lim)
            ticks = [float(t) for t in axis.get_majorticklocs() if low <= t <= high]
            values = [float(v) for line in ax.lines for v in np.asarray(line.get_xydata())[:, column]
                      if line.get_transform() == ax.transData]
            values += [float(v) for c in ax.collections for v in np.asarray(c.get_offsets()).reshape(-1, 2)[:, column]
                       if c.get_offset_transform() == ax.transData]
            colorbar = getattr(ax, "_colorbar", None)  # a heat map's colour scale: its cells' values
            if colorbar is not None:
                values = [float(v) for v in np.ma.compressed(colorbar.mappable.get_array())]
            found.append({"axis": name, "label": label, "limits": (low, high), "ticks": ticks, "values": values})
    return found


# kinds that draw AU (the ranking across data sets keeps the summary table's fraction)
AU_KINDS = ("au_vs_beta", "sweep", "rate_distortion", "curves", "per_class_au", "spectra", "architectures")


def test_au_axes_count_active_units_of_the_latent_dims(drawn):
    """AU is drawn as the count of active units out of the latent dims d (as the tables show it):
    every AU axis named "... (of d)" (never a fraction), ticks integers within [0, d] from 0 to d,
    the values along it counts (within [0, d], some above 1: not fractions on a count axis)."""
    for kind in AU_KINDS:
        axes = drawn[(kind, "fashion-mnist")]["au"]
        assert axes, f"{kind}: no axis labelled AU / active units"
        for found in axes:
            what = f"{kind} {found['axis']} axis {found['label']!r}"
            assert f"(of {D})" in found["label"] and "fraction" not in found["label"], what
            assert found["ticks"] and all(t == int(t) and 0 <= t <= D for t in found["ticks"]), (what, found["ticks"])
            assert found["ticks"][0] == 0 and found["ticks"][-1] == D, (what, found["ticks"])
            assert found["limits"][0] <= 0 < D <= found["limits"][1] <= 1.1 * D, (what, found["limits"])
            assert all(-1e-9 <= v <= D + 1e-9 for v in found["values"]), (what, found["values"])
        values = [v for found in axes for v in found["values"]]
        assert values and max(values) > 1, f"{kind}: AU values {sorted(set(values))} are fractions, not counts"


def test_every_figure_lays_out_for_many_methods_and_long_settings(drawn):
    kinds = {kind for kind, _ in drawn}
    assert {"au_vs_beta", "sweep", "rate_distortion", "curves", "per_class_au", "spectra", "kl_per_dim", "noise",
            "architectures", "images_reconstructions"} <= kinds
    bad = {f"{kind}.{dataset}": found["problems"] for (kind, dataset), found in drawn.items() if found["problems"]}
    assert not bad


def test_legends_name_methods_by_display_name_and_leave_architectures_to_panels(drawn):
    legends = {text for found in drawn.values() for text in found["legends"]}
    assert any(text.startswith("β-VAE") for text in legends)
    for text in legends:
        assert not any(arch in text for arch in ARCHS), text
        assert not any(text.startswith(code) for code in ("beta-vae", "lr-vae", "free-bits", "info-vae")), text
    # lr-vae sweeps α_T at β = 0.2: the shared β in the row's title, not in a legend
    sweep = drawn[("sweep", "fashion-mnist")]
    assert any(what.startswith("figure suptitle 'LR-VAE") and "=0.2" in what for what in sweep["texts"])
    assert not any("=0.2" in text for text in sweep["legends"])


def test_heat_map_rows_name_n_once(drawn):
    """n once: in each row's label, or (every setting with the same n) in the panel titles."""
    for kind in ("per_class_au", "kl_per_dim"):
        texts = drawn[(kind, "fashion-mnist")]["texts"]
        rows = [what.partition("y tick label ")[2] for what in texts if "y tick label" in what]
        assert rows and not any("n = " in row or "[n" in row for row in rows), rows
        assert any(": title '" in what and "n = 2 each" in what for what in texts)
