"""Figures of the latent space per setting: per-class AU, variance spectra, AU against the
threshold δ, the per-dimension KL heat map, noise sensitivity, and the image grids stored with
the runs (every seed, rows labelled)."""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

from .exact import sample_mean_std
from .figures import (LINESTYLES, SPREAD_NOTE, Figure, class_names, dots_and_mean, legend_below, legend_label,
                      method_style, method_styles, new_figure, not_drawn, render)
from .load import NOT_RECORDED, Setting, finite, order


def _vector(setting: Setting, key: str) -> list[list[float]]:
    """``vectors[key]`` of every ok run that has it (one list per seed)."""
    out = []
    for run in setting.ok:
        values = (run.record.vectors or {}).get(key)
        if values and all(finite(v) for v in values):
            out.append([float(v) for v in values])
    return out


def _thresholds(settings: Sequence[Setting]) -> list[float]:
    return sorted({float((r.record.estimators or {}).get("au_threshold") or r.setting.get("eval.au_threshold"))
                   for s in settings for r in s.ok
                   if (r.record.estimators or {}).get("au_threshold") or r.setting.get("eval.au_threshold")})


def figure_per_class(dataset: str, chosen: Sequence[Setting]) -> Figure:
    """Heat map of AU per class (class names), one row per headline setting, mean ± std over seeds."""
    import numpy as np

    figure = Figure("per_class_au", dataset, f"Per-class AU on {dataset}: fraction of latent dims active within each "
                    "class's test examples, one row per headline setting; cell: mean over seeds and (below) the "
                    "standard deviation; n per row in the label.")
    rows = []
    for s in chosen:
        per_seed = [p for p in (((r.record.per_class or {}).get("au") or {}) for r in s.ok) if p]
        if per_seed:
            rows.append((s, per_seed))
    if not rows:
        figure.skipped = f"per-class AU {NOT_RECORDED}"
        return figure
    classes = sorted({c for _, seeds in rows for p in seeds for c in p},
                     key=lambda c: order(int(c) if c.isdigit() else c))
    means = np.full((len(rows), len(classes)), np.nan)
    stds = np.zeros_like(means)
    for i, (_, seeds) in enumerate(rows):
        for j, c in enumerate(classes):
            values = [float(p[c]) for p in seeds if c in p]
            if values:
                mean, std = sample_mean_std(values)
                means[i, j], stds[i, j] = mean, 0.0 if std is None else std
    fig, (ax,) = new_figure(0.62 * len(classes) + 3.2, 0.42 * len(rows) + 1.6)
    image = ax.imshow(np.ma.masked_invalid(means), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(len(rows)):
        for j in range(len(classes)):
            if math.isfinite(means[i, j]):
                ax.text(j, i, f"{means[i, j]:.2f}\n±{stds[i, j]:.2f}", ha="center", va="center", fontsize=5,
                        color="white" if means[i, j] < 0.5 else "black")
    ax.set_xticks(range(len(classes)), class_names(dataset, classes), rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), [legend_label(s) + f" [n = {len(s.ok)}]" for s, _ in rows])
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="AU (fraction)", shrink=0.9)
    return render(fig, figure)


def figure_spectra(dataset: str, chosen: Sequence[Setting]) -> Figure:
    """Sorted per-dimension variances of the posterior means (log), one thin line per seed, and
    AU against the threshold δ (right)."""
    thresholds = _thresholds(chosen)
    figure = Figure("spectra", dataset, f"Left: per-dimension variance of the posterior mean over the test set on "
                    f"{dataset}, sorted, one thin line per seed and the mean (thick), headline settings; right: AU as "
                    "a function of the threshold δ (the fraction of dims with variance ≥ δ), per seed and mean; "
                    "dashed: the δ used for AU" + (f" ({thresholds[0]:g})" if len(thresholds) == 1 else "") + ".")
    lines = [(s, v) for s in chosen for v in [_vector(s, "au_variances")] if v and len({len(x) for x in v}) == 1]
    if not lines:
        figure.skipped = f"per-dimension variances {NOT_RECORDED}"
        return figure
    import numpy as np

    fig, (ax, ax2) = new_figure(8.0, 3.6, 1, 2)
    floor = 1e-8
    deltas = np.logspace(-5, 1, 121)
    for (s, seeds), (col, ls) in zip(lines, method_styles([s.method for s, _ in lines])):
        spectra = np.array([sorted(v, reverse=True) for v in seeds])
        dims = np.arange(1, spectra.shape[1] + 1)
        au = np.array([[np.mean(np.array(v) >= d) for d in deltas] for v in seeds])
        for row, curve in zip(spectra, au):
            ax.plot(dims, np.maximum(row, floor), color=col, lw=0.5, alpha=0.35, ls=ls)
            ax2.plot(deltas, curve, color=col, lw=0.5, alpha=0.35, ls=ls)
        ax.plot(dims, np.maximum(spectra.mean(axis=0), floor), color=col, lw=1.5, ls=ls, label=legend_label(s))
        ax2.plot(deltas, au.mean(axis=0), color=col, lw=1.5, ls=ls)
    for t in thresholds:
        ax.axhline(t, color="0.3", ls="--", lw=0.8)
        ax2.axvline(t, color="0.3", ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("latent dimension (sorted by variance)")
    ax.set_ylabel("Var over x of E q(z|x) (log)")
    ax2.set_xscale("log")
    ax2.set_xlabel("threshold δ (log)")
    ax2.set_ylabel("AU (fraction of dims ≥ δ)")
    ax2.set_ylim(-0.03, 1.03)
    legend_below(fig, [ax], columns=3)
    return render(fig, figure)


def figure_kl_heatmap(dataset: str, settings: Sequence[Setting]) -> Figure:
    """KL per latent dimension (nats), dims sorted by KL within each seed, mean over seeds, one row
    per setting (log colour scale)."""
    figure = Figure("kl_per_dim", dataset, f"Per-dimension KL on {dataset} (nats, log colour scale): for each setting "
                    "the KL of every latent dim, sorted from the largest within each seed, mean over seeds "
                    "(dimensions are not aligned across seeds, so they are sorted first); white text: n seeds.")
    rows = [(s, v) for s in settings for v in [_vector(s, "kl_per_dim")] if v and len({len(x) for x in v}) == 1]
    if not rows:
        figure.skipped = f"per-dimension KL {NOT_RECORDED}"
        return figure
    import numpy as np
    from matplotlib.colors import LogNorm

    width = max(len(v[0]) for _, v in rows)
    matrix = np.full((len(rows), width), np.nan)
    for i, (_, seeds) in enumerate(rows):
        sorted_seeds = np.array([sorted(v, reverse=True) for v in seeds])
        matrix[i, :sorted_seeds.shape[1]] = sorted_seeds.mean(axis=0)
    fig, (ax,) = new_figure(min(0.16 * width + 3.5, 9.0), 0.24 * len(rows) + 1.3)
    image = ax.imshow(np.maximum(matrix, 1e-4), norm=LogNorm(vmin=1e-3, vmax=max(1.0, float(np.nanmax(matrix)))),
                      cmap="magma", aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(rows)), [legend_label(s) for s, _ in rows], fontsize=5.5)
    ax.set_xlabel("latent dimension, sorted by KL (largest first)")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="KL per dim (nats)")
    return render(fig, figure)


def figure_noise(dataset: str, chosen: Sequence[Setting]) -> Figure:
    """Distance from the noiseless decoding and diversity between draws against the noise variance s²."""
    figure = Figure("noise", dataset, f"Noise sensitivity on {dataset}: L2 distance (in pixel space) of the decoded "
                    "mean of μ + s·ε from the decoding of μ, and the diversity between noise draws, against the "
                    "noise variance s²; headline settings. " + SPREAD_NOTE + ".")
    found = []
    for s in chosen:
        noises = [n for n in (r.record.noise or {} for r in s.ok)
                  if n.get("variances") and n.get("distance") and n.get("diversity")]
        if noises and len({json.dumps(n["variances"]) for n in noises}) == 1:
            found.append((s, noises))
    if not found:
        figure.skipped = not_drawn(chosen, "noise_sensitivity", "noise sensitivity")
        return figure
    fig, axes = new_figure(8.0, 3.4, 1, 2)
    for ax, key in zip(axes, ("distance", "diversity")):
        for k, (s, noises) in enumerate(found):
            style = method_style(s.method)
            xs = [float(v) for v in noises[0]["variances"]]
            step = (max(xs) - min(xs)) / max(len(xs) - 1, 1)
            offset = (k - (len(found) - 1) / 2) * step * 0.06
            means = [dots_and_mean(ax, x + offset, [float(n[key][i]) for n in noises], style, spread=step * 0.04,
                                   size=3.5) for i, x in enumerate(xs)]
            ax.plot([x + offset for x in xs], means, color=style[0], lw=1.0, ls=LINESTYLES[k % len(LINESTYLES)],
                    label=legend_label(s))
        ax.set_xlabel("noise variance s²")
        ax.set_title(key)
    axes[0].set_ylabel("L2 distance in pixel space")
    axes[1].set_ylabel("L2 diversity between draws")
    legend_below(fig, axes, columns=3)
    return render(fig, figure)


IMAGE_CAPTIONS = {"reconstructions": "Reconstructions: test images (odd rows) over their decoded posterior means "
                                     "(even rows)",
                  "samples": "Prior samples: decoded means of z ~ N(0, I)",
                  "noise": "Noise grids: decoded means of posterior means μ plus noise of variance s² (one row "
                           "per s², the same noise direction down each column)",
                  "traversals": "Latent traversals: one row per latent dimension (the most active ones, by variance of "
                                "the posterior mean), that dimension of one test image's posterior mean set to the "
                                "values on top, the others kept",
                  "interpolations": "Interpolations: one row per pair of test images, decoded means along the straight "
                                    "line between their posterior means (ends: the two posterior means)"}


def _row_labels(name: str, setting: Setting, rows: int) -> list[str] | None:
    run = setting.ok[0]
    if name == "noise":
        variances = (run.record.noise or {}).get("variances") or []
        return [f"s²={float(v):g}" for v in variances] if len(variances) == rows else None
    if name == "reconstructions" and rows % 2 == 0:
        return ["data", "recon."] * (rows // 2)
    layout = ((run.record.estimators or {}).get("latent_images") or {})
    if name == "traversals" and len(layout.get("traversal_dims") or []) == rows:
        return [f"dim {d}" for d in layout["traversal_dims"]]
    if name == "interpolations" and len(layout.get("interpolation_pairs") or []) == rows:
        return [f"{a}→{b}" for a, b in layout["interpolation_pairs"]]
    return None


def figure_images(name: str, dataset: str, chosen: Sequence[Setting], runs_dir: Path, seeds: int = 3) -> Figure:
    """The stored image grid ``name`` of up to ``seeds`` ok seeds (rows) of each headline setting
    (columns), drawn without smoothing and with labelled rows."""
    import matplotlib.image

    figure = Figure(f"images_{name}", dataset, IMAGE_CAPTIONS.get(name, f"Stored image `{name}`") + f" on {dataset}: "
                    f"one column per headline setting, one row per seed (up to {seeds}), from the PNGs stored with "
                    "the runs.")
    cells: list[tuple[Setting, list[tuple[object, object]]]] = []
    for s in chosen:
        found = []
        for run in s.ok:
            filename = (run.record.artifacts or {}).get(name)
            if isinstance(filename, str) and Path(filename).name == filename and (runs_dir / filename).is_file():
                found.append((run, matplotlib.image.imread(runs_dir / filename)))
            if len(found) == seeds:
                break
        if found:
            cells.append((s, found))
    if not cells:
        figure.skipped = not_drawn(chosen, "images", f"stored `{name}` images")
        return figure
    rows = max(len(found) for _, found in cells)
    first = cells[0][1][0][1]
    aspect = first.shape[0] / first.shape[1]
    width = min(2.3 * len(cells) + 0.6, 9.5)
    fig, axes = new_figure(width, (width - 0.6) / len(cells) * aspect * rows + 0.9, rows, len(cells))
    for c, (s, found) in enumerate(cells):
        for r in range(rows):
            ax = axes[r * len(cells) + c]
            ax.grid(False)
            ax.set_xticks([])
            ax.set_yticks([])
            if r >= len(found):
                ax.axis("off")
                continue
            run, image = found[r]
            ax.imshow(image, interpolation="nearest")
            if r == 0:
                ax.set_title(textwrap.fill(legend_label(s), 34), fontsize=6.5, color=method_style(s.method)[0])
            labels = _row_labels(name, s, _tile_rows(image))
            if c == 0 and labels:
                tile = image.shape[0] / len(labels)
                ax.set_yticks([tile * (i + 0.5) for i in range(len(labels))], labels, fontsize=5)
            ax.set_xlabel(f"seed {run.seed}", fontsize=5.5)
    return render(fig, figure)


def _tile_rows(image, nrow: int = 8, padding: int = 2) -> int:
    """Rows of square tiles in a grid written by the store (``nrow`` tiles a row, ``padding`` px)."""
    tile = (image.shape[1] - padding) / nrow - padding
    return max(1, round((image.shape[0] - padding) / (tile + padding))) if tile > 0 else 1
