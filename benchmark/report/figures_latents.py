"""Figures of the latent space per setting: per-class AU, variance spectra, AU against the
threshold δ, the per-dimension KL heat map, noise sensitivity, and the image grids stored with
the runs (every seed, rows labelled)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from .exact import sample_mean_std
from .figures import (LABEL_IN, SPREAD_NOTE, Figure, au_axis, au_label, au_ticks, categories, category_height,
                      class_names, dots_and_mean, facet_title, facets, finish, ink, latent_dims, legend_below,
                      method_style, method_styles, new_figure, not_drawn, setting_text, wrap)
from .load import NOT_RECORDED, Setting, finite, order
from .styles import tex


def _vector(setting: Setting, key: str) -> list[list[float]]:
    """``vectors[key]`` of every ok run that has it (one list per seed)."""
    out = []
    for run in setting.ok:
        values = (run.record.vectors or {}).get(key)
        if values and all(finite(v) for v in values):
            out.append([float(v) for v in values])
    return out


def _thresholds(settings: Sequence[Setting]) -> list[float]:
    return sorted({float((r.record.estimators or {}).get("au_threshold") or r.config.au_threshold)
                   for s in settings for r in s.ok
                   if (r.record.estimators or {}).get("au_threshold") or r.config.au_threshold})


def _facet_styles(settings: Sequence[Setting]) -> dict[str, tuple[str, object]]:
    """Colour and line style per setting name (:func:`setting_text` without n), the same in every panel."""
    names = sorted({setting_text(s, n=False): s for s in settings}.items(),
                   key=lambda kv: min(s.sort_key for s in settings if setting_text(s, n=False) == kv[0]))
    return dict(zip([t for t, _ in names], method_styles([s.method for _, s in names])))


def _heat_rows(settings: Sequence[Setting], every: Sequence[Setting]) -> list[str]:
    """A heat map's row labels: each setting, with its n (ok seeds) where the n of ``every`` differ."""
    shared = _n_shared(every)
    return [setting_text(s, n=False) + ("" if shared else f" (n = {s.n_text})") for s in settings]


def _n_shared(settings: Sequence[Setting]) -> str:
    """"n = 3 each" where every setting has the same n (a heat map's title, not each row's), else empty."""
    counts = {s.n_text for s in settings}
    return f"n = {counts.pop()} each" if len(counts) == 1 else ""


def figure_per_class(dataset: str, chosen: Sequence[Setting]) -> Figure:
    """Heat map of AU per class (class names) as a count of the d latent dims (the recorded fraction
    times d; the fraction where the settings' d differ), one row per headline setting, mean ± std
    over seeds, one panel per architecture."""
    import numpy as np

    rows = []
    for s in chosen:
        per_seed = [p for p in (((r.record.per_class or {}).get("au") or {}) for r in s.ok) if p]
        if per_seed:
            rows.append((s, per_seed))
    d = latent_dims([s for s, _ in rows])
    figure = Figure("per_class_au", dataset, f"Per-class AU on {dataset}: "
                    + (f"active units (of the {d} latent dims)" if d else "fraction of latent dims active")
                    + " within each class's test examples, one row per headline setting (n: its ok seeds), one panel "
                    "per architecture (or other model / train setting that differs); cell: mean over seeds and "
                    "(below) the standard deviation.")
    if not rows:
        figure.skipped = f"per-class AU {NOT_RECORDED}"
        return figure
    seeds_of = {s.key: seeds for s, seeds in rows}
    classes = sorted({c for _, seeds in rows for p in seeds for c in p},
                     key=lambda c: order(int(c) if c.isdigit() else c))
    panels = facets([s for s, _ in rows])
    every = [s for _, members in panels for s in members]
    labels = [_heat_rows(members, every) for _, members in panels]
    height = sum(max(0.32 * len(names), category_height(names)) for names in labels)
    fig, axes = new_figure(0.5 * len(classes) + LABEL_IN + 1.6, height + 0.45 * len(panels) + 1.3, len(panels), 1,
                           sharex=True, gridspec_kw={"height_ratios": [len(members) for _, members in panels]})
    for ax, (title, members), names in zip(axes, panels, labels):
        means = np.full((len(members), len(classes)), np.nan)
        stds = np.zeros_like(means)
        for i, s in enumerate(members):
            for j, c in enumerate(classes):
                values = [float(p[c]) * (d or 1) for p in seeds_of[s.key] if c in p]
                if values:
                    mean, std = sample_mean_std(values)
                    means[i, j], stds[i, j] = mean, 0.0 if std is None else std
        image = ax.imshow(np.ma.masked_invalid(means), vmin=0, vmax=d or 1, cmap="viridis", aspect="auto")
        decimals = 1 if d else 2  # a mean count at one decimal (as the tables), a fraction at two
        for i in range(len(members)):
            for j in range(len(classes)):
                if math.isfinite(means[i, j]):
                    ax.text(j, i, f"{means[i, j]:.{decimals}f}\n±{stds[i, j]:.{decimals}f}", ha="center",
                            va="center", fontsize=5, color=ink(image, means[i, j]))
        categories(ax, names)
        ax.set_xticks(range(len(classes)), class_names(dataset, classes), rotation=90)
        ax.grid(False)
        if title or _n_shared(every):
            ax.set_title(" · ".join(t for t in (title, _n_shared(every)) if t), fontsize=7)
    bar = fig.colorbar(image, ax=axes, label=au_label(d, "AU (fraction)"), shrink=min(0.9, 4.0 / fig.get_figheight()),
                       ticks=au_ticks(d) if d else None)
    bar.minorticks_off()
    return finish(fig, figure, min_w=3.0, min_h=0.75)


def figure_spectra(dataset: str, chosen: Sequence[Setting]) -> Figure:
    """Sorted per-dimension variances of the posterior means (log), one thin line per seed, and
    AU against the threshold δ (right); one row of panels per architecture."""
    thresholds = _thresholds(chosen)
    lines = [(s, v) for s in chosen for v in [_vector(s, "au_variances")] if v and len({len(x) for x in v}) == 1]
    sizes = {len(v[0]) for _, v in lines}
    d = sizes.pop() if len(sizes) == 1 else None  # the latent dims, when every setting has as many
    figure = Figure("spectra", dataset, f"Left: per-dimension variance of the posterior mean over the test set on "
                    f"{dataset}, sorted, one thin line per seed and the mean (thick), headline settings; right: AU as "
                    "a function of the threshold δ (" + (f"the number of the {d} latent dims" if d else
                                                          "the fraction of dims") + " with variance ≥ δ), per seed "
                    "and mean; "
                    "dashed: the δ used for AU" + (f" ({thresholds[0]:g})" if len(thresholds) == 1 else "")
                    + "; one row of panels per architecture (or other model / train setting that differs).")
    if not lines:
        figure.skipped = f"per-dimension variances {NOT_RECORDED}"
        return figure
    import numpy as np

    vectors = {s.key: v for s, v in lines}
    panels = facets([s for s, _ in lines])
    styles = _facet_styles([s for s, _ in lines])
    fig, axes = new_figure(8.0, 2.8 * len(panels) + 0.8, len(panels), 2)
    floor = 1e-8
    deltas = np.logspace(-5, 1, 121)
    for r, (title, members) in enumerate(panels):
        ax, ax2 = axes[2 * r], axes[2 * r + 1]
        for s in members:
            col, ls = styles[setting_text(s, n=False)]
            seeds = vectors[s.key]
            spectra = np.array([sorted(v, reverse=True) for v in seeds])
            dims = np.arange(1, spectra.shape[1] + 1)
            au = np.array([[np.sum(np.array(v) >= t) if d else np.mean(np.array(v) >= t) for t in deltas]
                           for v in seeds], dtype=float)
            for row, curve in zip(spectra, au):
                ax.plot(dims, np.maximum(row, floor), color=col, lw=0.5, alpha=0.35, ls=ls)
                ax2.plot(deltas, curve, color=col, lw=0.5, alpha=0.35, ls=ls)
            ax.plot(dims, np.maximum(spectra.mean(axis=0), floor), color=col, lw=1.5, ls=ls,
                    label=tex(setting_text(s)))
            ax2.plot(deltas, au.mean(axis=0), color=col, lw=1.5, ls=ls)
        for t in thresholds:
            ax.axhline(t, color="0.3", ls="--", lw=0.8)
            ax2.axvline(t, color="0.3", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("latent dimension (sorted by variance)")
        ax.set_ylabel("Var over x of E q(z|x) (log)")
        ax2.set_xscale("log")
        ax2.set_xlabel("threshold δ (log)")
        au_axis(ax2, d, label=au_label(d, "AU (fraction of dims ≥ δ)", "active units ≥ δ"))
        if title:
            ax.set_title(wrap(title, 3.4))
            ax2.set_title(wrap(title, 3.4))
    legend_below(fig, axes[::2])
    return finish(fig, figure, min_w=2.6, min_h=1.8)


def figure_kl_heatmap(dataset: str, settings: Sequence[Setting]) -> Figure:
    """KL per latent dimension (nats), dims sorted by KL within each seed, mean over seeds, one row
    per setting (log colour scale), one panel per architecture."""
    figure = Figure("kl_per_dim", dataset, f"Per-dimension KL on {dataset} (nats, log colour scale): for each setting "
                    "(n: its ok seeds) the KL of every latent dim, sorted from the largest within each seed, mean "
                    "over seeds (dimensions are not aligned across seeds, so they are sorted first); one panel per "
                    "architecture (or other model / train setting that differs).")
    rows = [(s, v) for s in settings for v in [_vector(s, "kl_per_dim")] if v and len({len(x) for x in v}) == 1]
    if not rows:
        figure.skipped = f"per-dimension KL {NOT_RECORDED}"
        return figure
    import numpy as np
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    vectors = {s.key: v for s, v in rows}
    width = max(len(v[0]) for _, v in rows)
    panels = facets([s for s, _ in rows])
    matrices = []
    for _, members in panels:
        matrix = np.full((len(members), width), np.nan)
        for i, s in enumerate(members):
            sorted_seeds = np.array([sorted(v, reverse=True) for v in vectors[s.key]])
            matrix[i, :sorted_seeds.shape[1]] = sorted_seeds.mean(axis=0)
        matrices.append(matrix)
    norm = LogNorm(vmin=1e-3, vmax=max(1.0, max(float(np.nanmax(m)) for m in matrices)))
    every = [s for _, members in panels for s in members]
    labels = [_heat_rows(members, every) for _, members in panels]
    fig, axes = new_figure(min(0.12 * width + LABEL_IN + 1.8, 10.0),
                           sum(category_height(names) for names in labels) + 0.5 * len(panels) + 1.0,
                           len(panels), 1, sharex=True,
                           gridspec_kw={"height_ratios": [len(members) for _, members in panels]})
    for ax, (title, _), matrix, names in zip(axes, panels, matrices, labels):
        image = ax.imshow(np.maximum(matrix, 1e-4), norm=norm, cmap="magma", aspect="auto", interpolation="nearest")
        categories(ax, names)
        ax.grid(False)
        if title or _n_shared(every):
            ax.set_title(" · ".join(t for t in (title, _n_shared(every)) if t), fontsize=7)
    axes[-1].set_xlabel("latent dimension, sorted by KL (largest first)")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(image, ax=axes, label="KL per dim (nats)", shrink=min(0.9, 4.0 / fig.get_figheight()))
    return finish(fig, figure, min_w=4.2, min_h=0.75)


def figure_noise(dataset: str, chosen: Sequence[Setting]) -> Figure:
    """Distance from the noiseless decoding and diversity between draws against the noise variance
    s², one row of panels per architecture."""
    figure = Figure("noise", dataset, f"Noise sensitivity on {dataset}: L2 distance (in pixel space) of the decoded "
                    "mean of μ + s·ε from the decoding of μ, and the diversity between noise draws, against the "
                    "noise variance s²; headline settings, one row of panels per architecture (or other model / "
                    "train setting that differs). " + SPREAD_NOTE + ".")
    found = []
    for s in chosen:
        noises = [n for n in (r.record.noise or {} for r in s.ok)
                  if n.get("variances") and n.get("distance") and n.get("diversity")]
        if noises and len({json.dumps(n["variances"]) for n in noises}) == 1:
            found.append((s, noises))
    if not found:
        figure.skipped = not_drawn(chosen, "noise_sensitivity", "noise sensitivity")
        return figure
    noises_of = {s.key: n for s, n in found}
    panels = facets([s for s, _ in found])
    styles = _facet_styles([s for s, _ in found])
    fig, axes = new_figure(8.0, 2.8 * len(panels) + 0.8, len(panels), 2)
    for r, (title, members) in enumerate(panels):
        for c, key in enumerate(("distance", "diversity")):
            ax = axes[2 * r + c]
            for k, s in enumerate(members):
                noises = noises_of[s.key]
                col, ls = styles[setting_text(s, n=False)]
                style = (col, method_style(s.method)[1])
                xs = [float(v) for v in noises[0]["variances"]]
                step = (max(xs) - min(xs)) / max(len(xs) - 1, 1)
                offset = (k - (len(members) - 1) / 2) * step * min(0.06, 0.25 / len(members))
                means = [dots_and_mean(ax, x + offset, [float(n[key][i]) for n in noises], style,
                                       spread=step * min(0.04, 0.15 / len(members)), size=3.5)
                         for i, x in enumerate(xs)]
                ax.plot([x + offset for x in xs], means, color=col, lw=1.0, ls=ls, marker=style[1], ms=3,
                        label=tex(setting_text(s)))
            ax.set_xlabel("noise variance s²")
            ax.set_title(wrap(key + (f" · {title}" if title else ""), 3.4))
            ax.set_ylabel("L2 distance in pixel space" if key == "distance" else "L2 diversity between draws")
    legend_below(fig, axes[::2])
    return finish(fig, figure, min_w=2.6, min_h=1.8)


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
    """The stored image grid ``name`` of up to ``seeds`` ok seeds (columns) of each headline
    setting (rows, labelled with the method, its hyperparameters and architecture), drawn without
    smoothing and with labelled rows of tiles; many settings go in two blocks side by side."""
    import matplotlib.image

    figure = Figure(f"images_{name}", dataset, IMAGE_CAPTIONS.get(name, f"Stored image `{name}`") + f" on {dataset}: "
                    f"one row per headline setting (labelled on the left), one column per seed (up to {seeds}), "
                    "from the PNGs stored with the runs.")
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
    several = len(facets([s for s, _ in cells])) > 1
    per_row = max(len(found) for _, found in cells)
    first = cells[0][1][0][1]
    aspect = first.shape[0] / first.shape[1]
    blocks = 2 if len(cells) > 8 else 1
    rows = math.ceil(len(cells) / blocks)
    panel = 2.2 if blocks == 1 else 1.35
    label_w = 1.5
    width = blocks * (per_row * panel + label_w)

    def row_label(s: Setting) -> str:  # the method and its settings, on the left of its row
        return wrap(setting_text(s) + (f"\n{facet_title(s)}" if several and facet_title(s) else ""), label_w - 0.45,
                    6.5)

    # each row as high as its image or its label (6.5 pt lines), whichever is higher
    heights = [max([panel * aspect] + [(row_label(s).count("\n") + 1) * 0.115 for s, _ in cells[r::rows]]) + 0.22
               for r in range(rows)]
    fig, axes = new_figure(width, sum(heights) + 0.2, rows, blocks * per_row, gridspec_kw={"height_ratios": heights})
    for ax in axes:
        ax.set_axis_off()
    for i, (s, found) in enumerate(cells):
        r, block = i % rows, i // rows
        for k in range(per_row):
            ax = axes[r * blocks * per_row + block * per_row + k]
            if k >= len(found):
                continue
            run, image = found[k]
            ax.set_axis_on()
            ax.grid(False)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.imshow(image, interpolation="nearest")
            ax.set_xlabel(f"seed {run.seed}", fontsize=5.5, labelpad=1)
            if k == 0:
                ax.set_ylabel(row_label(s), fontsize=6.5, color=method_style(s.method)[0], rotation=0, ha="right",
                              va="center", labelpad=16)
                labels = _row_labels(name, s, _tile_rows(image))
                if labels:
                    tile = image.shape[0] / len(labels)
                    ax.set_yticks([tile * (j + 0.5) for j in range(len(labels))], labels, fontsize=4.5)
                    ax.tick_params(axis="y", length=0, pad=1)
    return finish(fig, figure, image_w=panel * 0.85)


def _tile_rows(image, nrow: int = 8, padding: int = 2) -> int:
    """Rows of square tiles in a grid written by the store (``nrow`` tiles a row, ``padding`` px)."""
    tile = (image.shape[1] - padding) / nrow - padding
    return max(1, round((image.shape[0] - padding) / (tile + padding))) if tile > 0 else 1
