"""Figures across settings: AU against beta, any swept hyperparameter (AU, KL, rec), the
rate-distortion plane with sweeps connected, every method under each architecture, and the
ranking of methods across data sets. Architectures (and other model / train settings that differ)
are panels, never legend entries; legends name methods and hyperparameters only."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from .figures import (SPREAD_NOTE, Figure, au_axis, au_label, au_value, au_values, blank_figure, categories,
                      category_height, colour, dots_and_mean, draw_mi_caps, facets, finish, hp_parts, ink,
                      invalid_caption, latent_dims, legend_below, legend_entries, log_worthy, method_style,
                      method_styles, mi_cap_text, new_figure, rec_unit, setting_text, short_titles, subfigure_grid,
                      tick_values, wrap)
from .layout import add_legend, renderer
from .load import BASELINE, Run, Setting, method_order, order, value_text
from .styles import display_name, hp_name, part_text, tex
from .tables import au_count_text

Series = tuple[str, str, list[Setting]]  # method, the label of the other settings, settings along the sweep
METRIC_NAMES = {"au": "AU", "kl": "KL", "mi": "MI", "nll": "IW-NLL", "rec": "rec"}


def swept(settings: Sequence[Setting], column: str) -> list[str]:
    """Methods whose settings take more than one value of ``column``."""
    methods: dict[str, set[str]] = {}
    for s in settings:
        if s.values.get(column) is not None:
            methods.setdefault(s.method, set()).add(json.dumps(s.values[column], default=str))
    return sorted((m for m, v in methods.items() if len(v) > 1), key=method_order)


def series(settings: Sequence[Setting], column: str, methods: Sequence[str]) -> list[Series]:
    """Per method, the settings grouped by their other hyperparameters and sorted along ``column``
    (``settings``: one panel's, so they share their model / train settings)."""
    groups: dict[tuple[str, str], list[Setting]] = {}
    for s in settings:
        if s.method in methods and s.values.get(column) is not None and s.values_of("au"):
            groups.setdefault((s.method, ", ".join(hp_parts(s, [column]))), []).append(s)
    return [(m, rest, sorted(members, key=lambda s: order(s.values[column])))
            for (m, rest), members in sorted(groups.items(), key=lambda kv: (method_order(kv[0][0]), kv[0][1]))]


def series_styles(keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, Any]]:
    """Colour and line style of each (method, rest) series, the same in every panel of a figure."""
    unique = sorted(set(keys), key=lambda k: (method_order(k[0]), k[1]))
    return dict(zip(unique, method_styles([m for m, _ in unique])))


def series_label(method: str, rest: str) -> str:
    return tex(display_name(method) + (f" {rest}" if rest else ""))


def _positions(values: Sequence[Any]) -> tuple[dict[str, float], bool, bool]:
    """x position per value (numbers as themselves, text as categories), log axis or not, numeric."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        return {json.dumps(v): float(v) for v in values}, log_worthy([float(v) for v in values]), True
    texts = sorted({json.dumps(v, default=str) for v in values})
    return {t: float(i) for i, t in enumerate(texts)}, False, False


def _dodge(positions: Sequence[float], log: bool, count: int) -> float:
    """Sideways offset between ``count`` dodged series: together at most 40% of the smallest gap
    between swept values (decades on a log axis)."""
    xs = sorted({math.log10(p) if log else p for p in positions})
    gaps = [b - a for a, b in zip(xs, xs[1:]) if b > a]
    gap = min(gaps) if gaps else (0.3 if log else max(abs(xs[0]) if xs else 1.0, 1.0))
    return min(0.035 if log else 0.05 * gap, 0.4 * gap / max(count, 1))


def _draw_series(ax, items: list[Series], column: str, metric: str, positions: dict[str, float], log: bool,
                 width: float, styles: dict[tuple[str, str], tuple[str, Any]], lines: bool = True,
                 label: Callable[[str, str], str] = series_label, d: int | None = None) -> None:
    """Per series a line through the means (``lines``; not between categories) and per-seed dots;
    series dodged sideways by ``width``, each in its colour and line style (``styles``); AU as a
    count of ``d`` latent dims (:func:`.figures.au_values`; the fraction without d)."""
    for k, (method, rest, members) in enumerate(items):
        col, ls = styles[(method, rest)]
        style = (col, method_style(method)[1])
        offset = (k - (len(items) - 1) / 2) * width
        xs, means = [], []
        for s in members:
            x = positions[json.dumps(s.values[column], default=str)]
            x = x * 10 ** offset if log else x + offset
            values = au_values(s, d) if metric == "au" else s.values_of(metric)
            mean = dots_and_mean(ax, x, values, style, log_x=log, spread=width * 0.6, short=s.short)
            if mean is not None:
                xs.append(x)
                means.append(mean)
        ax.plot(xs, means, color=col, ls=ls if lines else "none", lw=1.1, marker=style[1], ms=3.5 if lines else 4,
                label=label(method, rest) or "_", zorder=1)


def _height_ratios(fig, grid, parts: Sequence[float], legends: Sequence[Any]) -> None:
    """Size the rows of subfigures of ``grid`` (each with its panels' height in inches and its
    legend, if any): height ratios and the figure's height from the measured legends."""
    render = renderer(fig)
    heights = [h + (legend.get_window_extent(render).height / fig.dpi + 0.1 if legend is not None else 0.0)
               for h, legend in zip(parts, legends)]
    grid.set_height_ratios(heights)
    fig.set_size_inches(fig.get_figwidth(), sum(heights))


def figure_au_vs_beta(dataset: str, settings: Sequence[Setting]) -> Figure:
    """AU against beta for the methods that sweep beta (dodged, ticks at every beta), and below
    them the methods with one beta (the plain VAE and the LID decoders: beta = 1 in their loss) as
    a dot plot, one column of panels per architecture."""
    methods = swept(settings, "hp.beta")
    d = latent_dims([s for s in settings if s.values_of("au")])
    what = f"AU (active units, a count of the {d} latent dims)" if d else "AU (fraction of latent dims active)"
    figure = Figure("au_vs_beta", dataset, f"{what} against β on {dataset}, per method "
                    "that sweeps β (series dodged sideways so none hides another); below: methods with a single β "
                    f"(their loss weights the KL by that β), one row each; the `{BASELINE}` mean dashed in every "
                    "panel; one column of panels per architecture (or other model / train setting that differs). "
                    + SPREAD_NOTE + "." + invalid_caption(settings, ["au"]))
    panels = facets([s for s in settings if s.values_of("au")])
    sweeps = [series(members, "hp.beta", methods) for _, members in panels]
    if not any(sweeps):
        figure.skipped = "no method sweeps `beta`"
        return figure
    fixed = [[s for s in members if s.method not in methods] for _, members in panels]
    betas = sorted({float(s.config.hp("beta")) for items in sweeps for _, _, members in items for s in members})
    betas_fixed = [value_text(s.config.hp("beta") or 1.0) for group in fixed for s in group]
    usual = max(sorted(set(betas_fixed)), key=betas_fixed.count) if betas_fixed else ""  # in the title

    def fixed_label(s: Setting) -> str:  # the method and its settings; its β where it is not the usual one
        text = setting_text(s, n=False)
        beta = value_text(s.config.hp("beta") or 1.0)
        return text + (f" (β = {beta})" if beta != usual and "β=" not in text else "")

    rows = sorted({fixed_label(s): (method_order(s.method), s.sort_key) for group in fixed for s in group}.items(),
                  key=lambda kv: kv[1])
    labels = [text for text, _ in rows]
    log = log_worthy(betas)
    styles = series_styles([(m, rest) for items in sweeps for m, rest, _ in items])
    width = min(13.0, max(5.5, 3.3 * len(panels) + 1.6))
    fig = blank_figure(width, 4.0)
    grid, subs = subfigure_grid(fig, 2 if labels else 1)
    top, bottom = subs[0][0], (subs[1][0] if labels else None)
    axes = top.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    vae_mean = {}
    for ax, (title, members), items in zip(axes, panels, sweeps):
        positions = {json.dumps(b): b for b in betas}
        for s in members:
            if s.config.hp("beta") is not None:
                positions.setdefault(json.dumps(s.config.hp("beta")), float(s.config.hp("beta")))
        _draw_series(ax, items, "hp.beta", "au", positions, log, _dodge(betas, log, len(items)), styles, d=d)
        tick_values(ax, betas, log)
        ax.set_xlabel("β (KL weight)")
        au_axis(ax, d)
        if title:
            ax.set_title(wrap(title, width / len(panels) - 0.4))
        vae = [s for s in members if s.method == BASELINE and s.values_of("au")]
        if vae:
            counts = au_values(vae[0], d)
            vae_mean[title] = math.fsum(counts) / len(counts)
            ax.axhline(vae_mean[title], color=colour(BASELINE), ls="--", lw=0.8, zorder=0,
                       label=f"{display_name(BASELINE)} mean")
    axes[0].set_ylabel(au_label(d))
    handles, names = legend_entries(axes)
    legend = add_legend(top, handles, names)
    parts = [2.9]
    legends = [legend]
    if bottom is not None:
        below = bottom.subplots(1, len(panels), sharey=True, sharex=True, squeeze=False)[0]
        for ax, (title, _), group in zip(below, panels, fixed):
            for s in group:
                dots_and_mean(ax, float(labels.index(fixed_label(s))), au_values(s, d), method_style(s.method),
                              spread=0.35, short=s.short, horizontal=True)
            if title in vae_mean:
                ax.axvline(vae_mean[title], color=colour(BASELINE), ls="--", lw=0.8, zorder=0)
            au_axis(ax, d, "x", au_label(d))
            ax.set_title(wrap(f"one β (β = {usual}" + (" unless named)" if len(set(betas_fixed)) > 1 else ")")
                              + (f" · {title}" if title else ""), width / len(panels) - 0.4))
        categories(below[0], labels)
        parts.append(max(category_height(labels) + 0.15, 0.85) + 0.8)
        legends.append(None)
    _height_ratios(fig, grid, parts, legends)
    return finish(fig, figure, min_w=2.2, min_h=0.8)


def figure_sweep(dataset: str, settings: Sequence[Setting]) -> Figure:
    """AU, KL and rec against every swept hyperparameter: one row of panels per method and swept
    hyperparameter, a panel per metric and architecture (side by side), one line per setting of
    the method's other hyperparameters (their legend below the row)."""
    d = latent_dims([s for s in settings if s.values_of("au")])
    au_what = f"AU (active units of the {d} latent dims)" if d else "AU (fraction)"
    figure = Figure("sweep", dataset, f"Hyperparameter sweeps on {dataset}: {au_what}, KL (nats) and rec against "
                    "each hyperparameter a method sweeps (log axis where the values span a factor of 20 or more; "
                    "text values as categories), one row of panels per method and swept hyperparameter, each metric "
                    "once per architecture side by side (or other model / train setting that differs: named in full "
                    "in the first row, by architecture in the others), one line per "
                    "setting of the other hyperparameters with at least two points. " + SPREAD_NOTE + ".")
    groups = facets(settings)
    names = short_titles(groups)
    found: dict[tuple[str, str], list[tuple[int, list[Series]]]] = {}
    for f, (_, members) in enumerate(groups):
        for column in sorted({c for s in members for c in s.values if c.startswith("hp.")}):
            for method in swept(members, column):
                items = [x for x in series(members, column, [method]) if len(x[2]) > 1]
                if items:
                    found.setdefault((method, column), []).append((f, items))
    if not found:
        figure.skipped = "no method sweeps a hyperparameter"
        return figure
    rows = sorted(found.items(), key=lambda kv: (method_order(kv[0][0]), kv[0][1]))
    metrics = [("au", au_label(d, "AU (fraction)")), ("kl", "KL (nats)"), ("rec", "rec")]
    drawn = [s for _, panels in rows for _, items in panels for _, _, members in items for s in members]
    figure.caption += f" rec: {rec_unit(settings)}." + invalid_caption(drawn, [key for key, _ in metrics])
    # the panels of a row: one per metric and architecture; aligned (a column per architecture in
    # every row, named in full in the first row only) when every row has every architecture, else
    # each row's own, each named
    aligned = all(len(panels) == len(groups) for _, panels in rows)
    across = max(len(panels) for _, panels in rows)
    panel_w = 1.75 if across > 1 else 2.3
    width = min(13.0, 3 * across * panel_w + 0.8)
    fig = blank_figure(width, 2.5 * len(rows))
    grid, subs = subfigure_grid(fig, len(rows))
    parts, legends = [], []
    for r, ((block,), ((method, column), panels)) in enumerate(zip(subs, rows)):
        axes = block.subplots(1, 3 * across, squeeze=False)[0]
        name = hp_name(column[3:])
        values = [s.values[column] for _, items in panels for _, _, members in items for s in members]
        positions, log, numeric = _positions(values)
        styles = series_styles([(m, rest) for _, items in panels for m, rest, _ in items])
        present = {(f if aligned else k): (f, items) for k, (f, items) in enumerate(panels)}
        # settings every line of the row shares: in the row's title, not in its legend
        rests = [rest.split(", ") if rest else [] for _, items in panels for _, rest, _ in items]
        common = [part for part in rests[0] if all(part in other for other in rests)]
        label = lambda _, rest: tex(", ".join(p for p in rest.split(", ") if p not in common))  # noqa: E731
        extra = 0.14 * wrap(name, panel_w - 0.1, 8).count("\n")  # inches beyond a row of one-line labels
        for m, (metric, ylabel) in enumerate(metrics):
            for f in range(across):
                ax = axes[m * across + f]
                if f not in present:
                    ax.set_axis_off()
                    continue
                g, items = present[f]
                title = groups[g][0] if r == 0 or not aligned else names[g]
                dodge = _dodge(list(positions.values()), log, len(items)) if numeric else min(0.08, 0.5 / len(items))
                _draw_series(ax, items, column, metric, positions, log, dodge, styles, lines=numeric, label=label,
                             d=d)
                if numeric:
                    tick_values(ax, [float(v) for v in values], log)
                else:
                    texts = [str(json.loads(t)) if t.startswith('"') else t for t in positions]
                    wide = sum(len(t) for t in texts) * 7 * 0.55 / 72 > 0.8 * (panel_w - 0.5)
                    ax.set_xticks(list(positions.values()), texts, rotation=90 if wide else 0)
                    ax.set_xlim(-0.5, len(texts) - 0.5)
                    if wide:  # the row grows by the longest label
                        extra = max(extra, max(len(t) for t in texts) * 7 * 0.55 / 72)
                ax.set_xlabel(wrap(name, panel_w - 0.1, 8))
                if f == min(present):
                    ax.set_ylabel(ylabel)
                if metric == "au":
                    au_axis(ax, d)
                if across > 1 or title:
                    ax.set_title(wrap(title, panel_w - 0.1, 6.5), fontsize=6.5)
            if across > 1:  # each metric on one scale across the architectures
                shown = [axes[m * across + f] for f in present]
                low = min(ax.get_ylim()[0] for ax in shown)
                high = max(ax.get_ylim()[1] for ax in shown)
                for ax in shown:
                    ax.set_ylim(low, high)
        block.suptitle(tex(f"{display_name(method)}: {name}" + (f" ({', '.join(common)})" if common else "")), x=0.01,
                       ha="left", fontsize=8, fontweight="bold")
        handles, labels = legend_entries(axes)
        legends.append(add_legend(block, handles, labels) if any(labels) else None)
        tall = max(wrap(groups[g][0] if r == 0 or not aligned else names[g], panel_w - 0.1, 6.5).count("\n") + 1
                   if groups[g][0] else 0 for g, _ in panels)
        parts.append(2.1 + 0.12 * tall + extra)
    _height_ratios(fig, grid, parts, legends)
    return finish(fig, figure, min_w=1.3, min_h=1.0)


def _distortion(run: Run) -> float | None:
    """-E log p(x|z) of a run in nats: the negative ELBO (beta = 1, full constants) minus the KL
    (None unless both are valid)."""
    neg_elbo, kl = run.metric("neg_elbo"), run.metric("kl")
    return None if neg_elbo is None or kl is None else neg_elbo - kl


def _against_kl(s: Setting, y_of: Callable[[Run], float | None]) -> list[tuple[float, float]]:
    """(KL, y) of every ok run where both are valid, in seed order."""
    return [(kl, y) for kl, y in ((r.metric("kl"), y_of(r)) for r in s.ok) if kl is not None and y is not None]


def figure_rate_distortion(dataset: str, settings: Sequence[Setting]) -> Figure:
    """Rate (KL) against distortion (nats) and AU against KL, sweeps connected along beta, one row
    of panels per architecture."""
    usable = [s for s in settings if _against_kl(s, _distortion)]
    d = latent_dims(usable)
    figure = Figure("rate_distortion", dataset, f"Rate-distortion on {dataset}: rate = KL (nats), distortion = "
                    "−E log p(x|z) (nats, full likelihood constants: −ELBO − KL), lower left is better; right: "
                    + (f"AU (active units of the {d} latent dims)" if d else "AU") + " against KL. One marker per setting (mean over seeds, dots: seeds, hollow: one seed), settings "
                    "that differ only in β joined in β order (numbers: β); the plain VAE drawn on top; one row of "
                    "panels per architecture (or other model / train setting that differs)."
                    + invalid_caption(usable, ["kl", "neg_elbo", "au"]))
    if not usable:
        figure.skipped = "no ok runs with KL and −ELBO"
        return figure
    panels = facets(usable)
    keyed = [[((s.method, ", ".join(hp_parts(s, ["hp.beta"]))), s) for s in members] for _, members in panels]
    styles = series_styles([key for group in keyed for key, _ in group])
    fig, axes = new_figure(8.0, 3.0 * len(panels) + 0.8, len(panels), 2)
    for r, ((title, _), group) in enumerate(zip(panels, keyed)):
        ax1, ax2 = axes[2 * r], axes[2 * r + 1]
        groups: dict[tuple[str, str], list[Setting]] = {}
        for key, s in group:
            groups.setdefault(key, []).append(s)
        ordered = sorted(groups.items(), key=lambda kv: (method_order(kv[0][0]), kv[0][1]))
        for (method, rest), members in ordered:
            col, ls = styles[(method, rest)]
            members = sorted(members, key=lambda s: order(s.config.hp("beta")))
            marker = method_style(method)[1]
            on_top = 6 if method == BASELINE else 3
            for ax, y_of in ((ax1, _distortion), (ax2, lambda run: au_value(run, d))):
                xs, ys = [], []
                for s in members:
                    pairs = _against_kl(s, y_of)
                    if not pairs:
                        continue
                    ax.scatter([p[0] for p in pairs], [p[1] for p in pairs], s=5, color=col, alpha=0.35,
                               linewidths=0, zorder=on_top - 1)
                    x, y = (math.fsum(p[i] for p in pairs) / len(pairs) for i in (0, 1))
                    ax.plot([x], [y], marker=marker, ms=6 if method == BASELINE else 4.5, color=col, ls="none",
                            markerfacecolor="white" if len(s.ok) == 1 else col, zorder=on_top, markeredgewidth=1.2)
                    if (len(members) > 1 and s.config.hp("beta") is not None) or s.short:
                        text = (f"{s.config.hp('beta'):g}" if len(members) > 1 and s.config.hp("beta") is not None
                                else "") + (" †" if s.short else "")
                        ax.annotate(text.strip(), (x, y), textcoords="offset points", xytext=(3, 2), fontsize=5,
                                    color=col, zorder=on_top)
                    xs.append(x)
                    ys.append(y)
                ax.plot(xs, ys, color=col, ls=ls, lw=1.0, zorder=on_top - 2, marker=marker, ms=3,
                        label=series_label(method, rest) if ax is ax1 else None)
        suffix = f" · {title}" if title else ""
        ax1.set_xlabel("rate: KL (nats)")
        ax1.set_ylabel("distortion: −E log p(x|z) (nats)")
        ax1.set_title(wrap("rate-distortion" + suffix, 3.4))
        ax2.set_xlabel("rate: KL (nats)")
        au_axis(ax2, d, label=au_label(d, "AU (fraction)"))
        ax2.set_title(wrap("AU against KL" + suffix, 3.4))
    legend_below(fig, axes[::2])
    return finish(fig, figure, min_w=2.6, min_h=2.0)


def figure_architectures(dataset: str, settings: Sequence[Setting], keys: Sequence[str]) -> Figure:
    """Each method's headline setting (rows) under each architecture preset (one row of panels
    each), one column per metric of ``keys``: per-seed dots, the mean and its CI."""
    figure = Figure("architectures", dataset, f"Architectures on {dataset}: each method's headline setting (one row "
                    "each) under each architecture preset (one row of panels each; other model / train settings "
                    "that differ too), " + ", ".join(METRIC_NAMES.get(k, k) for k in keys)
                    + (" (dashed: the MI cap log N)" if "mi" in keys else "") + ". " + SPREAD_NOTE + "."
                    + invalid_caption(settings, keys))
    panels = facets([s for s in settings if s.ok])
    if not panels:
        figure.skipped = "no ok runs"
        return figure
    rows = sorted({setting_text(s, n=False): (method_order(s.method), s.sort_key) for _, members in panels
                   for s in members}.items(), key=lambda kv: kv[1])
    labels = [text for text, _ in rows]
    d = latent_dims([s for _, members in panels for s in members if s.values_of("au")])
    height = (category_height(labels) + 0.45) * len(panels) + 0.6
    fig, axes = new_figure(min(13.0, 1.9 * len(keys) + 2.2), height, len(panels), len(keys), sharey=True,
                           sharex="col")
    for r, (title, members) in enumerate(panels):
        for c, key in enumerate(keys):
            ax = axes[r * len(keys) + c]
            for s in members:
                dots_and_mean(ax, float(labels.index(setting_text(s, n=False))),
                              au_values(s, d) if key == "au" else s.values_of(key), method_style(s.method),
                              spread=0.35, short=s.short, horizontal=True)
            if key == "mi":
                draw_mi_caps(ax, [cap[0] for cap in (s.mi_cap() for s in members) if cap is not None], vertical=True)
            if key == "au":
                au_axis(ax, d, "x")
            if r == 0:
                ax.set_title(METRIC_NAMES.get(key, key))
            if r == len(panels) - 1:
                caps = mi_cap_text(c[0] for c in (s.mi_cap() for s in settings) if c is not None) if key == "mi" else ""
                name = au_label(d, "AU (fraction)") if key == "au" else f"{METRIC_NAMES.get(key, key)} (nats)"
                ax.set_xlabel(wrap(name + (f"\ndashed: {caps}" if caps else ""), 1.7))
            if c == 0 and title:
                ax.set_ylabel(wrap(title, category_height(labels) + 0.2), fontsize=7)
    categories(axes[0], labels)
    return finish(fig, figure, min_w=1.3, min_h=0.8)


def figure_ranking(datasets: Sequence[str], chosen: Sequence[Setting]) -> Figure:
    """Rank of each method's headline setting by mean AU per data set (1 = most units active),
    and its mean rank; numbers: mean AU."""
    figure = Figure("ranking", "all", "Ranking across data sets: rank of each method's headline setting by mean AU "
                    "on each data set (1 = most active units; ties share the mean rank), numbers: mean active "
                    "units (a count of the setting's latent dims); last column: mean rank over the data sets where "
                    "the method ran." + invalid_caption(chosen, ["au"]))
    table: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, str]] = {}
    names: dict[str, str] = {}
    for dataset in datasets:
        here = [s for s in chosen if s.dataset == dataset and s.values_of("au")]
        for s in here:
            table.setdefault(s.legend, {})[dataset] = s.mean_std("au")[0]  # ranked by the fraction: any d
            as_count = au_count_text(s, spread=False)  # as the tables write it (32/32, 20.2/32)
            counts.setdefault(s.legend, {})[dataset] = as_count[0] if as_count else f"{s.mean_std('au')[0]:.2f}"
            names.setdefault(s.legend, " ".join([display_name(s.method)] + [
                ", ".join(part_text(c, t) for c, t in s.parts)] if s.parts else [display_name(s.method)]))
    if len(datasets) < 2 or not table:
        figure.skipped = "fewer than two data sets with ok runs"
        return figure
    import numpy as np
    import pandas as pd

    means = pd.DataFrame(table).T.reindex(columns=list(datasets))
    ranks = means.rank(axis=0, ascending=False, method="average")
    ranks["mean rank"] = ranks.mean(axis=1)
    order_rows = ranks.sort_values(["mean rank"], kind="stable").index
    ranks = ranks.loc[order_rows]
    fig, (ax,) = new_figure(0.9 * len(ranks.columns) + 3.6, 0.25 * len(ranks) + 1.3)
    values = ranks.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis_r", aspect="auto")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if math.isfinite(values[i, j]):
                text = (f"{values[i, j]:.1f}" if j == values.shape[1] - 1 else
                        f"{values[i, j]:g} ({counts[ranks.index[i]][ranks.columns[j]]})")
                ax.text(j, i, text, ha="center", va="center", fontsize=5.5, color=ink(image, values[i, j]))
    ax.set_xticks(range(values.shape[1]), list(ranks.columns), rotation=90)
    ax.set_yticks(range(values.shape[0]), [tex(names[k]) for k in ranks.index])
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="rank (1 = most AU)")
    return finish(fig, figure, min_w=3.6, min_h=1.0)
