"""Training curves: test AU, KL (and MI where at least three epochs have it) per epoch for every
setting, one block of panels per method (a column per architecture) with its settings in the
legend below it; one thin line per seed under the mean."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .figures import (Figure, au_axis, au_label, blank_figure, draw_mi_caps, facets, finish, latent_dims,
                      legend_entries, method_styles, setting_text, subfigure_grid, wrap)
from .layout import add_legend, renderer
from .load import Run, Setting, finite, method_order
from .styles import display_name, part_text, tex

PANELS = {"test_au": "test AU (fraction)", "test_kl": "test KL (nats)", "test_mi": "test MI (nats)",
          "loss": "training loss (per example)", "rec": "training rec (per example)", "alpha": "α (LR weight)"}


def curve(run: Run, key: str, d: int | None = None) -> dict[int, float]:
    """Epoch -> value of ``key`` in the run's curve points; ``test_au`` as a count of ``d`` latent
    dims where d is given (the point's ``test_au_count``, else the fraction times d)."""
    points = {}
    for point in run.record.curves or []:
        value = point.get(key)
        if finite(value):
            count = point.get("test_au_count") if key == "test_au" and d else None
            points[int(point["epoch"])] = float(count) if finite(count) else float(value) * (d or 1)
    return points


def panel_name(key: str, d: int | None) -> str:
    """A panel's name (:data:`PANELS`): test AU as a count of ``d`` latent dims where d is given."""
    return au_label(d, PANELS[key], "test active units") if key == "test_au" else PANELS[key]


def curve_mi_cap(run: Run) -> float | None:
    """Cap log M (nats) of the test-split MI of a run's curves: the recorded ``estimators.mi_cap``
    when the final MI used the whole test split too, else log M from the test split's size (M =
    min(mi_batch_size, size) for the batch mixture); None without a recorded cap."""
    estimators = run.record.estimators or {}
    cap, size = estimators.get("mi_cap"), estimators.get("examples")
    if not finite(cap):
        return None
    if estimators.get("mi_split", "test") == "test" and estimators.get("mi_examples", size) == size:
        return float(cap)
    if not finite(size) or size < 1:
        return None
    if estimators.get("mi_estimator") == "aggregate-batch":
        size = min(run.config.mi_batch_size, size)
    return math.log(size)


def panels_for(settings: Sequence[Setting], keys: Sequence[str]) -> list[str]:
    """The keys with curve points; MI only where some run has it at three or more epochs."""
    out = []
    for key in keys:
        counts = [len(curve(r, key)) for s in settings for r in s.ok]
        if counts and max(counts) >= (3 if key == "test_mi" else 1):
            out.append(key)
    return out


def figure_curves(dataset: str, settings: Sequence[Setting], kind: str = "curves", caption: str | None = None,
                  keys: Sequence[str] = ("test_au", "test_kl", "test_mi"),
                  columns: Sequence[tuple[str, list[Setting]]] | None = None,
                  label: Callable[[Setting], str] | None = None) -> Figure:
    """Per epoch, one block of panels per method (or per ``columns``: title, settings): a row per
    key, a column per architecture (or other model / train setting that differs); ``label`` names a
    setting's line in its block's legend (default: its hyperparameters). Blocks whose legends name
    the same lines share one legend below them all."""
    keys = panels_for(settings, keys)
    d = latent_dims(settings)
    figure = Figure(kind, dataset, caption or (
        f"Training curves on {dataset} for every setting: " + ", ".join(panel_name(k, d) for k in keys)
        + " per epoch, one block of panels per method (its settings in the legend below it), one column per "
        "architecture (or other model / train setting that differs); thick: mean over seeds, thin: each seed"
        + ("; dashed: the MI cap log N" if "test_mi" in keys else "") + "."))
    if not keys:
        figure.skipped = "no curve points recorded"
        return figure
    from matplotlib.ticker import MaxNLocator

    common: dict[str, list[str]] = {}  # method -> the hyperparameters all its settings share (in its title)
    if columns is None:
        columns = []
        for m in sorted({s.method for s in settings}, key=method_order):
            group = [s for s in settings if s.method == m]
            parts = [(c, t) for c, t in group[0].parts if c.startswith("hp.") and all((c, t) in s.parts for s in group)]
            common[m] = [c for c, _ in parts]
            columns.append((display_name(m) + (" (" + ", ".join(part_text(c, t) for c, t in parts) + ")" if parts
                                               else ""), group))
    if label is None:
        label = lambda s: tex(setting_text(s, method=False, skip=common.get(s.method, ())))  # noqa: E731
    blocks = [(title, group) for title, group in columns
              if any(curve(r, k) for s in group for r in s.ok for k in keys)]
    # each architecture (or other model / train setting that differs) in the same column of every
    # block where some block has two of them; otherwise each block's own, in order
    everywhere = [title for title, _ in facets([s for _, group in blocks for s in group])]
    mine = [facets(group) for _, group in blocks]
    aligned = any(len(f) > 1 for f in mine)
    block_facets = [[(everywhere.index(title) if aligned else c, title, members)
                     for c, (title, members) in enumerate(f)] for f in mine]  # (column, title, settings)
    across = max(c for f in block_facets for c, _, _ in f) + 1
    panel_w, panel_h = 1.65, 1.1
    block_w = across * panel_w + 0.5
    fits = max(1, min(len(blocks), int(12.8 // block_w)))
    block_rows = math.ceil(len(blocks) / fits)
    per_row = math.ceil(len(blocks) / block_rows)  # rows as full as each other
    labels = [[label(s) for s in group] for _, group in blocks]
    shared = (len(blocks) > 1 and len(set(labels[0])) > 1
              and all(sorted(set(x)) == sorted(set(labels[0])) for x in labels))
    fig = blank_figure(per_row * block_w, 3.0 * block_rows)
    outer_grid, outer = subfigure_grid(fig, 2) if shared else (None, [[fig]])
    inner_grid, grid = subfigure_grid(outer[0][0], block_rows, per_row)
    legends, handles_all = [], {}
    for b, ((title, group), facet_list) in enumerate(zip(blocks, block_facets)):
        block = grid[b // per_row][b % per_row]
        axes = block.subplots(len(keys), across, squeeze=False, sharex="col")
        names = sorted({setting_text(s, n=False) for s in group},
                       key=lambda t: min(s.sort_key for s in group if setting_text(s, n=False) == t))
        first = {t: next(s for s in group if setting_text(s, n=False) == t) for t in names}
        styles = dict(zip(names, method_styles([first[t].method for t in names])))
        for c, facet, members in facet_list:
            for s in members:
                col, ls = styles[setting_text(s, n=False)]
                for r, key in enumerate(keys):
                    ax = axes[r][c]
                    curves = [p for p in (curve(run, key, d) for run in s.ok) if p]
                    if not curves:
                        continue
                    for points in curves:
                        ax.plot(sorted(points), [points[e] for e in sorted(points)], color=col, lw=0.4, alpha=0.35,
                                ls=ls)
                    epochs = sorted(set().union(*curves))
                    means = [math.fsum(p[e] for p in curves if e in p) / sum(1 for p in curves if e in p)
                             for e in epochs]
                    ax.plot(epochs, means, color=col, lw=1.4, ls=ls, marker="o" if len(epochs) < 3 else None, ms=3,
                            label=(label(s) or "_") if r == 0 else None)
            for r, key in enumerate(keys):
                ax = axes[r][c]
                ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
                if key != "test_au":
                    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
                if r == 0 and (across > 1 or len(everywhere) > 1) and facet and facet not in title:
                    ax.set_title(wrap(facet, panel_w - 0.2, 7), fontsize=7)
                if c == min(c for c, _, _ in facet_list):
                    name = panel_name(key, d)
                    ax.set_ylabel(name.replace(" (of", "\n(of") if key == "test_au" else name, fontsize=7)
                if r == len(keys) - 1:
                    ax.set_xlabel("epoch")
                if key == "test_au":
                    au_axis(ax, d)
                    if not d:
                        ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
                if key == "test_mi":
                    draw_mi_caps(ax, [cap for cap in (curve_mi_cap(run) for s in members for run in s.ok
                                                       if curve(run, key)) if cap is not None])
        for c in set(range(across)) - {c for c, _, _ in facet_list}:
            for r in range(len(keys)):
                axes[r][c].set_axis_off()
        block.suptitle(wrap(title, block_w - 0.2, 8), fontsize=8, fontweight="bold")
        handles, names_shown = legend_entries([axes[0][c] for c, _, _ in facet_list])
        for handle, name in zip(handles, names_shown):
            handles_all.setdefault(name, handle)
        legends.append(add_legend(block, handles, names_shown, max_columns=3)
                       if not shared and len(handles) > 1 else None)
    render_ = renderer(fig)
    widest = max((legend.get_window_extent(render_).width / fig.dpi for legend in legends if legend is not None),
                 default=0.0)
    if widest + 0.1 > block_w:  # blocks as wide as their widest legend
        fig.set_figwidth(per_row * (widest + 0.1))
    heights = []
    for row in range(block_rows):
        row_legends = [legend for legend in legends[row * per_row:(row + 1) * per_row] if legend is not None]
        tall = max((legend.get_window_extent(render_).height / fig.dpi for legend in row_legends), default=0.0)
        titled = across > 1 or len(everywhere) > 1
        lines = max((wrap(facet, panel_w - 0.2, 7).count("\n") + 1
                     for (title, _), f in list(zip(blocks, block_facets))[row * per_row:(row + 1) * per_row]
                     for _, facet, _ in f if facet and titled and facet not in title), default=0)
        heights.append(len(keys) * panel_h + 0.75 + 0.12 * lines + tall + (0.1 if tall else 0.0))
    inner_grid.set_height_ratios(heights)
    total = sum(heights)
    if shared:
        legend = add_legend(outer[1][0], list(handles_all.values()), list(handles_all), loc="center", max_columns=4)
        tall = legend.get_window_extent(render_).height / fig.dpi + 0.15
        outer_grid.set_height_ratios([total, tall])
        total += tall
    fig.set_size_inches(fig.get_figwidth(), total)
    return finish(fig, figure, min_w=1.3, min_h=0.85)
