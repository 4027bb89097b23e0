"""Training curves: test AU, KL (and MI where at least three epochs have it) per epoch for every
setting, one column of panels per method; one thin line per seed under the mean."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .figures import Figure, draw_mi_caps, legend_below, legend_label, method_styles, new_figure, render
from .load import Run, Setting, finite, method_order

PANELS = {"test_au": "test AU (fraction)", "test_kl": "test KL (nats)", "test_mi": "test MI (nats)",
          "loss": "training loss (per example)", "rec": "training rec (per example)", "alpha": "α (LR weight)"}


def curve(run: Run, key: str) -> dict[int, float]:
    """Epoch -> value of ``key`` in the run's curve points."""
    points = {}
    for point in run.record.curves or []:
        value = point.get(key)
        if finite(value):
            points[int(point["epoch"])] = float(value)
    return points


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
        size = min(int((run.record.config.get("eval") or {}).get("mi_batch_size", 50)), size)
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
                  label: Callable[[Setting], str] = legend_label) -> Figure:
    """Per epoch, one row of panels per key, one column per method (or per ``columns``: title,
    settings); ``label`` names a setting's line in the legend."""
    keys = panels_for(settings, keys)
    figure = Figure(kind, dataset, caption or (
        f"Training curves on {dataset} for every setting: " + ", ".join(PANELS[k] for k in keys)
        + " per epoch, one column per method; thick: mean over seeds, thin: each seed"
        + ("; dashed: the MI cap log N" if "test_mi" in keys else "") + "."))
    if not keys:
        figure.skipped = "no curve points recorded"
        return figure
    from matplotlib.ticker import MaxNLocator

    if columns is None:
        columns = [(m, [s for s in settings if s.method == m]) for m in sorted({s.method for s in settings},
                                                                                key=method_order)]
    titles = [t for t, g in columns if any(curve(r, k) for s in g for r in s.ok for k in keys)]
    groups = [g for t, g in columns if t in titles]
    fig, axes = new_figure(min(2.4 * len(groups) + 0.5, 12.0), 1.9 * len(keys) + 1.0 + 0.12 * len(settings),
                           len(keys), len(groups), sharex="col")
    for c, group in enumerate(groups):
        for s, (col, ls) in zip(group, method_styles([s.method for s in group])):
            for r, key in enumerate(keys):
                ax = axes[r * len(groups) + c]
                curves = [p for p in (curve(run, key) for run in s.ok) if p]
                if not curves:
                    continue
                for points in curves:
                    ax.plot(sorted(points), [points[e] for e in sorted(points)], color=col, lw=0.4, alpha=0.35, ls=ls)
                epochs = sorted(set().union(*curves))
                means = [math.fsum(p[e] for p in curves if e in p) / sum(1 for p in curves if e in p) for e in epochs]
                ax.plot(epochs, means, color=col, lw=1.4, ls=ls, marker="o" if len(epochs) < 3 else None, ms=3,
                        label=label(s) if r == 0 else None)
        for r, key in enumerate(keys):
            ax = axes[r * len(groups) + c]
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if r == 0:
                ax.set_title(titles[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(PANELS[key])
            if r == len(keys) - 1:
                ax.set_xlabel("epoch")
            if key == "test_au":
                ax.set_ylim(-0.03, 1.03)
            if key == "test_mi":
                draw_mi_caps(ax, [cap for cap in (curve_mi_cap(run) for s in group for run in s.ok
                                                   if curve(run, key)) if cap is not None])
    legend_below(fig, axes, columns=3)
    return render(fig, figure)
