"""Figures across settings: AU against beta, any swept hyperparameter (AU, KL, rec), the
rate-distortion plane with sweeps connected, and the ranking of methods across data sets."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from .figures import (SPREAD_NOTE, Figure, colour, dots_and_mean, invalid_caption, legend_below, legend_label,
                      log_worthy, method_style, method_styles, mpl_text, new_figure, rec_unit, render, tick_values)
from .format import symbol_text
from .load import BASELINE, Run, Setting, method_order, order, value_text

Series = tuple[str, str, list[Setting]]  # method, the label of the other settings, settings along the sweep


def swept(settings: Sequence[Setting], column: str) -> list[str]:
    """Methods whose settings take more than one value of ``column``."""
    methods: dict[str, set[str]] = {}
    for s in settings:
        if s.values.get(column) is not None:
            methods.setdefault(s.method, set()).add(json.dumps(s.values[column], default=str))
    return sorted((m for m, v in methods.items() if len(v) > 1), key=method_order)


def series(settings: Sequence[Setting], column: str, methods: Sequence[str]) -> list[Series]:
    """Per method, the settings grouped by everything but ``column`` and sorted along it."""
    groups: dict[tuple[str, str], list[Setting]] = {}
    for s in settings:
        if s.method in methods and s.values.get(column) is not None and s.values_of("au"):
            rest = ", ".join(symbol_text(text) for c, text in s.parts if c != column)
            groups.setdefault((s.method, rest), []).append(s)
    return [(m, rest, sorted(members, key=lambda s: order(s.values[column])))
            for (m, rest), members in sorted(groups.items(), key=lambda kv: (method_order(kv[0][0]), kv[0][1]))]


def _positions(values: Sequence[Any]) -> tuple[dict[str, float], bool, bool]:
    """x position per value (numbers as themselves, text as categories), log axis or not, numeric."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        return {json.dumps(v): float(v) for v in values}, log_worthy([float(v) for v in values]), True
    texts = sorted({json.dumps(v, default=str) for v in values})
    return {t: float(i) for i, t in enumerate(texts)}, False, False


def _draw_series(ax, items: list[Series], column: str, metric: str, positions: dict[str, float], log: bool,
                 width: float, lines: bool = True) -> None:
    """Per series a line through the means (``lines``; not between categories) and per-seed dots;
    series dodged sideways, each method's series in its colour, lighter and dashed from the second on."""
    for k, ((method, rest, members), (col, ls)) in enumerate(zip(items, method_styles([m for m, _, _ in items]))):
        style = (col, method_style(method)[1])
        offset = (k - (len(items) - 1) / 2) * width
        xs, means = [], []
        for s in members:
            x = positions[json.dumps(s.values[column], default=str)]
            x = x * 10 ** offset if log else x + offset
            mean = dots_and_mean(ax, x, s.values_of(metric), style, log_x=log, spread=width * 0.6, short=s.short)
            if mean is not None:
                xs.append(x)
                means.append(mean)
        label = mpl_text(method + (f" ({rest})" if rest else ""))
        ax.plot(xs, means, color=col, ls=ls if lines else "none", lw=1.1, marker=style[1], ms=0 if lines else 4,
                label=label, zorder=1)


def figure_au_vs_beta(dataset: str, settings: Sequence[Setting]) -> Figure:
    """AU against beta for the methods that sweep beta (dodged, ticks at every beta), and in a
    side panel the methods with one beta (the plain VAE and the LID decoders: beta = 1 in their loss)."""
    methods = swept(settings, "hp.beta")
    fixed = [s for s in settings if s.method not in methods and s.values_of("au")]
    figure = Figure("au_vs_beta", dataset, f"AU (fraction of latent dims active) against β on {dataset}, per method "
                    "that sweeps β (series dodged sideways so none hides another); right: methods with a single β "
                    f"(their loss weights the KL by that β), the `{BASELINE}` mean dashed across both panels. "
                    + SPREAD_NOTE + "." + invalid_caption(settings, ["au"]))
    items = series(settings, "hp.beta", methods)
    if not items:
        figure.skipped = "no method sweeps `beta`"
        return figure
    betas = sorted({float(s.values["hp.beta"]) for _, _, members in items for s in members})
    fig, (ax, side) = new_figure(7.5, 3.8, 1, 2, width_ratios=[3, 0.35 * len(fixed) + 0.6], sharey=True)
    positions = {json.dumps(b): b for b in betas}
    for s in settings:
        if s.values.get("hp.beta") is not None:
            positions.setdefault(json.dumps(s.values["hp.beta"]), float(s.values["hp.beta"]))
    log = log_worthy(betas)
    _draw_series(ax, items, "hp.beta", "au", positions, log, 0.035 if log else 0.02 * (max(betas) - min(betas) or 1))
    tick_values(ax, betas, log)
    ax.set_xlabel("β (KL weight)")
    ax.set_ylabel("AU (fraction of latent dims)")
    for i, s in enumerate(fixed):
        dots_and_mean(side, float(i), s.values_of("au"), method_style(s.method), label=legend_label(s), spread=0.3,
                      short=s.short)
    betas_fixed = {value_text(s.values.get("hp.beta") or 1.0) for s in fixed}
    side.set_xticks(range(len(fixed)), [mpl_text(s.method + ("" if s.label == "—" else "\n" + symbol_text(s.label)))
                                         + ("" if len(betas_fixed) == 1 else f"\nβ = {value_text(s.values.get('hp.beta') or 1.0)}")
                                         for s in fixed], rotation=30, ha="right", fontsize=6)
    side.set_xlim(-0.6, len(fixed) - 0.4)
    side.set_title(f"one β (β = {betas_fixed.pop()})" if len(betas_fixed) == 1 else "one β")
    for s in fixed:
        if s.method == BASELINE:
            mean = s.mean_std("au")[0]
            for a in (ax, side):
                a.axhline(mean, color=colour(BASELINE), ls="--", lw=0.8, zorder=0,
                          label=f"{BASELINE} mean" if a is ax else None)
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(dataset)
    legend_below(fig, [ax, side], columns=3)
    return render(fig, figure)


def figure_sweep(dataset: str, settings: Sequence[Setting]) -> Figure:
    """AU, KL and rec against every swept hyperparameter, per method (series: the other settings)."""
    figure = Figure("sweep", dataset, f"Hyperparameter sweeps on {dataset}: AU (fraction), KL (nats) and rec against "
                    "each hyperparameter a method sweeps (log axis where the values span a factor of 20 or more; "
                    "text values as categories), one line per setting of the other hyperparameters with at least two "
                    "points. " + SPREAD_NOTE + ".")
    columns = sorted({c for s in settings for c in s.values if c.startswith("hp.")})
    rows = []
    for column in columns:
        for method in swept(settings, column):
            items = [x for x in series(settings, column, [method]) if len(x[2]) > 1]
            if items:
                rows.append((method, column, items))
    if not rows:
        figure.skipped = "no method sweeps a hyperparameter"
        return figure
    metrics = [("au", "AU (fraction)"), ("kl", "KL (nats)"), ("rec", "rec (per image)")]
    drawn = [s for _, _, items in rows for _, _, members in items for s in members]
    figure.caption += f" rec: {rec_unit(settings)}." + invalid_caption(drawn, [key for key, _ in metrics])
    fig, axes = new_figure(8.0, 2.1 * len(rows) + 0.8, len(rows), 3)
    for r, (method, column, items) in enumerate(rows):
        values = [s.values[column] for _, _, members in items for s in members]
        positions, log, numeric = _positions(values)
        for c, (metric, title) in enumerate(metrics):
            ax = axes[3 * r + c]
            _draw_series(ax, items, column, metric, positions, log, 0.02 if log else 0.06, lines=numeric)
            name = symbol_text(column[3:] + "=").rstrip("=")
            if numeric:
                tick_values(ax, [float(v) for v in values], log)
            else:
                ax.set_xticks(list(positions.values()), [json.loads(t) if t.startswith('"') else t
                                                         for t in positions], rotation=20)
            ax.set_xlabel(mpl_text(f"{method}: {name}"))
            ax.set_ylabel(title)
            if metric == "au":
                ax.set_ylim(-0.03, 1.03)
    legend_below(fig, axes, columns=2)
    return render(fig, figure)


def _distortion(run: Run) -> float | None:
    """-E log p(x|z) of a run in nats: the negative ELBO (beta = 1, full constants) minus the KL
    (None unless both are valid)."""
    neg_elbo, kl = run.metric("neg_elbo"), run.metric("kl")
    return None if neg_elbo is None or kl is None else neg_elbo - kl


def _against_kl(s: Setting, y_of: Callable[[Run], float | None]) -> list[tuple[float, float]]:
    """(KL, y) of every ok run where both are valid, in seed order."""
    return [(kl, y) for kl, y in ((r.metric("kl"), y_of(r)) for r in s.ok) if kl is not None and y is not None]


def figure_rate_distortion(dataset: str, settings: Sequence[Setting]) -> Figure:
    """Rate (KL) against distortion (nats) and AU against KL, sweeps connected along beta."""
    usable = [s for s in settings if _against_kl(s, _distortion)]
    figure = Figure("rate_distortion", dataset, f"Rate-distortion on {dataset}: rate = KL (nats), distortion = "
                    "−E log p(x|z) (nats, full likelihood constants: −ELBO − KL), lower left is better; right: "
                    "AU against KL. One marker per setting (mean over seeds, dots: seeds, hollow: one seed), settings "
                    "that differ only in β joined in β order (numbers: β); the plain VAE drawn on top."
                    + invalid_caption(usable, ["kl", "neg_elbo", "au"]))
    if not usable:
        figure.skipped = "no ok runs with KL and −ELBO"
        return figure
    fig, (ax1, ax2) = new_figure(8.0, 3.7, 1, 2)
    groups: dict[tuple[str, str], list[Setting]] = {}
    for s in usable:
        rest = ", ".join(symbol_text(text) for c, text in s.parts if c != "hp.beta")
        groups.setdefault((s.method, rest), []).append(s)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0] == BASELINE, method_order(kv[0][0]), kv[0][1]))
    for ((method, rest), members), (col, ls) in zip(ordered, method_styles([m for (m, _), _ in ordered])):
        members = sorted(members, key=lambda s: order(s.values.get("hp.beta")))
        marker = method_style(method)[1]
        on_top = 6 if method == BASELINE else 3
        for ax, y_of in ((ax1, _distortion), (ax2, lambda r: r.metric("au"))):
            xs, ys = [], []
            for s in members:
                pairs = _against_kl(s, y_of)
                if not pairs:
                    continue
                ax.scatter([p[0] for p in pairs], [p[1] for p in pairs], s=5, color=col, alpha=0.35, linewidths=0,
                           zorder=on_top - 1)
                x, y = (math.fsum(p[i] for p in pairs) / len(pairs) for i in (0, 1))
                ax.plot([x], [y], marker=marker, ms=6 if method == BASELINE else 4.5, color=col, ls="none",
                        markerfacecolor="white" if len(s.ok) == 1 else col, zorder=on_top, markeredgewidth=1.2)
                if (len(members) > 1 and s.values.get("hp.beta") is not None) or s.short:
                    text = (f"{s.values['hp.beta']:g}" if len(members) > 1 and s.values.get("hp.beta") is not None
                            else "") + (" †" if s.short else "")
                    ax.annotate(text.strip(), (x, y), textcoords="offset points", xytext=(3, 2), fontsize=5,
                                color=col, zorder=on_top)
                xs.append(x)
                ys.append(y)
            label = mpl_text(method + (f" ({rest})" if rest else ""))
            ax.plot(xs, ys, color=col, ls=ls, lw=1.0, zorder=on_top - 2, marker=marker, ms=3,
                    label=label if ax is ax1 else None)
    ax1.set_xlabel("rate: KL (nats)")
    ax1.set_ylabel("distortion: −E log p(x|z) (nats)")
    ax1.set_title("rate-distortion")
    ax2.set_xlabel("rate: KL (nats)")
    ax2.set_ylabel("AU (fraction)")
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_title("AU against KL")
    legend_below(fig, [ax1], columns=3)
    return render(fig, figure)


def figure_ranking(datasets: Sequence[str], chosen: Sequence[Setting]) -> Figure:
    """Rank of each method's headline setting by mean AU per data set (1 = most units active),
    and its mean rank; numbers: mean AU."""
    figure = Figure("ranking", "all", "Ranking across data sets: rank of each method's headline setting by mean AU "
                    "on each data set (1 = most active units; ties share the mean rank), numbers: mean AU; last "
                    "column: mean rank over the data sets where the method ran." + invalid_caption(chosen, ["au"]))
    table: dict[str, dict[str, float]] = {}
    for dataset in datasets:
        here = [s for s in chosen if s.dataset == dataset and s.values_of("au")]
        for s in here:
            table.setdefault(s.legend, {})[dataset] = s.mean_std("au")[0]
    if len(datasets) < 2 or not table:
        figure.skipped = "fewer than two data sets with ok runs"
        return figure
    import numpy as np
    import pandas as pd

    means = pd.DataFrame(table).T.reindex(columns=list(datasets))
    ranks = means.rank(axis=0, ascending=False, method="average")
    ranks["mean rank"] = ranks.mean(axis=1)
    order_rows = ranks.sort_values(["mean rank"], kind="stable").index
    ranks, means = ranks.loc[order_rows], means.loc[order_rows]
    fig, (ax,) = new_figure(1.0 * len(ranks.columns) + 3.0, 0.35 * len(ranks) + 1.4)
    values = ranks.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis_r", aspect="auto")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if math.isfinite(values[i, j]):
                text = (f"{values[i, j]:.1f}" if j == values.shape[1] - 1 else
                        f"{values[i, j]:g}\n({means.iloc[i, j]:.2f})")
                ax.text(j, i, text, ha="center", va="center", fontsize=5.5,
                        color="white" if values[i, j] < np.nanmean(values) else "black")
    ax.set_xticks(range(values.shape[1]), list(ranks.columns), rotation=30, ha="right")
    ax.set_yticks(range(values.shape[0]), list(ranks.index))
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="rank (1 = most AU)")
    return render(fig, figure)
