"""The report's figures, drawn with matplotlib and seaborn under fixed settings: AU against beta,
rate-distortion and AU against KL, training curves, per-class AU, latent variance spectra and
noise sensitivity. PNG and PDF bytes carry no dates or version strings."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
from dataclasses import dataclass
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from .format import slug
from .load import BASELINE, NOT_RECORDED, Run, Setting, finite, method_order, order, value_text


PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None}
RC = {"svg.hashsalt": "benchmark-report", "figure.dpi": 100, "savefig.dpi": 120, "font.size": 9,
      "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7, "xtick.labelsize": 8, "ytick.labelsize": 8,
      "pdf.fonttype": 42, "path.simplify": True}


@dataclass
class Figure:
    kind: str
    dataset: str
    caption: str
    png: bytes | None = None
    pdf: bytes | None = None
    skipped: str | None = None  # why it was not drawn

    @property
    def stem(self) -> str:
        return f"{self.kind}.{slug(self.dataset)}"


@contextlib.contextmanager
def figure_style():
    """Fixed matplotlib settings (defaults + seaborn's whitegrid + RC), whatever the user's matplotlibrc;
    the previous settings are restored afterwards."""
    import matplotlib as mpl
    import seaborn as sns

    with mpl.rc_context():
        mpl.rcdefaults()
        mpl.rcParams.update(sns.axes_style("whitegrid"))
        mpl.rcParams.update(RC)
        yield


def _render(fig) -> tuple[bytes, bytes]:
    """PNG and PDF bytes without dates or version strings; the constrained layout is computed once."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    png, pdf = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", metadata=PNG_METADATA)
    fig.savefig(pdf, format="pdf", metadata=PDF_METADATA)
    return png.getvalue(), pdf.getvalue()


def palette(methods: Iterable[str]) -> dict[str, Any]:
    import seaborn as sns

    names = sorted(set(methods), key=method_order)
    colours = sns.color_palette("colorblind", max(len(names), 1))
    return {m: colours[i % len(colours)] for i, m in enumerate(names)}


def _new_figure(width: float, height: float, panels: int = 1):
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def _sample_std(values: Sequence[float], mean: float) -> float:
    """Standard deviation with the N-1 divisor; 0 for one value (drawn as no error bar)."""
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0


def _class_order(name: str) -> tuple:
    return order(int(name) if name.lstrip("-").isdigit() else name)


def _mean_series(series: list[list[float]]) -> tuple[list[float], list[float]]:
    """Elementwise mean and std (ddof 1, 0 for one series) of equally long lists."""
    means, stds = [], []
    for column in zip(*series):
        mean = math.fsum(column) / len(column)
        means.append(mean)
        stds.append(_sample_std(column, mean))
    return means, stds


def _latent_dim(settings: Sequence[Setting]) -> str:
    dims = {s.values.get("model.latent_dim") for s in settings}
    return f"d = {value_text(dims.pop())}" if len(dims) == 1 else "d varies"


def figure_au_vs_beta(dataset: str, settings: Sequence[Setting], colours: dict[str, Any]) -> Figure:
    swept = [s for s in settings if s.values.get("hp.beta") is not None and s.values_of("au")]
    base = [s for s in settings if s.method == BASELINE and s.values_of("au")]
    without = sorted({s.method for s in settings if s.method != BASELINE and s.values.get("hp.beta") is None},
                     key=method_order)
    caption = (f"AU (fraction of latent dims, {_latent_dim(settings)}) against beta per method on {dataset}: "
               "mean ± std over seeds; `vae` is beta = 1"
               + (f"; no beta: {', '.join(without)}" if without else "") + ".")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig_ = Figure("au_vs_beta", dataset, caption)
    if not swept:
        fig_.skipped = "no method with a `beta` hyperparameter has ok runs"
        return fig_
    fig, (ax,) = _new_figure(5.5, 3.4)
    groups: dict[tuple[str, str], list[Setting]] = {}
    for s in swept:
        rest = ", ".join(text for column, text in s.parts if column != "hp.beta")
        groups.setdefault((s.method, rest), []).append(s)
    markers = itertools.cycle("osD^vP*X")
    for (method, rest), members in sorted(groups.items(), key=lambda kv: (method_order(kv[0][0]), kv[0][1])):
        members = sorted(members, key=lambda s: s.values["hp.beta"])
        xs = [s.values["hp.beta"] for s in members]
        stats = [s.mean_std("au") for s in members]
        ax.errorbar(xs, [m for m, _, _ in stats], yerr=[sd or 0.0 for _, sd, _ in stats], marker=next(markers),
                    ms=4, capsize=2, lw=1.2, color=colours[method], label=method + (f" ({rest})" if rest else ""))
    for s in base:
        mean, std, _ = s.mean_std("au")
        ax.errorbar([1.0], [mean], yerr=[std or 0.0], marker="s", ms=5, capsize=2, color=colours[BASELINE],
                    ls="none", label=BASELINE + (f" ({s.label})" if s.label != "—" else ""))
    betas = [s.values["hp.beta"] for s in swept] + ([1.0] if base else [])
    if min(betas) > 0 and max(betas) / min(betas) >= 5:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("beta")
    ax.set_ylabel("AU (fraction)")
    ax.set_title(dataset)
    ax.legend(loc="best", frameon=True)
    fig_.png, fig_.pdf = _render(fig)
    return fig_


def figure_tradeoff(dataset: str, settings: Sequence[Setting], colours: dict[str, Any]) -> Figure:
    usable = [s for s in settings if s.values_of("kl") and s.values_of("rec") and s.values_of("au")]
    fig_ = Figure("tradeoff", dataset, f"Trade-offs on {dataset}, one point per setting (mean ± std over seeds): "
                  "rate-distortion (KL vs rec, lower-left is better) and AU vs KL.")
    if not usable:
        fig_.skipped = "no ok runs with KL, rec and AU"
        return fig_
    fig, (ax1, ax2) = _new_figure(9.0, 3.6, 2)
    seen: set[str] = set()
    for s in usable:
        kl, kl_sd, _ = s.mean_std("kl")
        rec, rec_sd, _ = s.mean_std("rec")
        au, au_sd, _ = s.mean_std("au")
        label = s.method if s.method not in seen else None
        seen.add(s.method)
        ax1.errorbar([kl], [rec], xerr=[kl_sd or 0.0], yerr=[rec_sd or 0.0], marker="o", ms=4, capsize=2,
                     color=colours[s.method], ls="none", label=label)
        ax2.errorbar([kl], [au], xerr=[kl_sd or 0.0], yerr=[au_sd or 0.0], marker="o", ms=4, capsize=2,
                     color=colours[s.method], ls="none")
        if s.label != "—":
            for ax, y in ((ax1, rec), (ax2, au)):
                ax.annotate(s.label, (kl, y), textcoords="offset points", xytext=(3, 3), fontsize=5,
                            color=colours[s.method])
    ax1.set_xlabel("KL (nats, rate)")
    ax1.set_ylabel("rec (distortion)")
    ax1.set_title("rate-distortion")
    ax2.set_xlabel("KL (nats)")
    ax2.set_ylabel("AU (fraction)")
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_title("AU vs KL")
    ax1.legend(loc="best", frameon=True)
    fig_.png, fig_.pdf = _render(fig)
    return fig_


def _curve(run: Run, key: str) -> dict[int, float]:
    points = {}
    for point in run.record.curves or []:
        value = point.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            points[int(point["epoch"])] = float(value)
    return points


def _curve_mi_cap(run: Run) -> float | None:
    """Cap log M (nats) of the test-split MI of a run's training curves: the recorded
    ``estimators.mi_cap`` when the final MI used the whole test split too, else log M from the test
    split's size (M = min(mi_batch_size, size) for the batch mixture); None without a recorded cap."""
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


def _draw_mi_caps(ax, caps: Iterable[float]) -> None:
    """The MI caps (nats) as labelled dashed horizontal lines."""
    for cap in sorted({round(c, 6) for c in caps}):
        ax.axhline(cap, color="0.3", ls="--", lw=1)
        ax.text(0.99, cap, f"cap log {round(math.exp(cap))} = {cap:.2f}", transform=ax.get_yaxis_transform(),
                ha="right", va="bottom", fontsize=6, color="0.3")


def figure_curves(dataset: str, chosen: Sequence[Setting], colours: dict[str, Any]) -> Figure:
    from matplotlib.ticker import MaxNLocator

    panels = [("test_kl", "test KL (nats)"), ("test_au", "test AU (fraction)")]
    if any(_curve(r, "test_mi") for s in chosen for r in s.ok):
        panels.append(("test_mi", "test MI (nats)"))
    fig_ = Figure("curves", dataset, f"Training curves on {dataset} of each method's headline setting: "
                  "test-split " + ", ".join(p[0][5:].upper() for p in panels) + " per epoch, mean ± std over seeds"
                  + ("; dashed: the MI cap log N (N = mixture size)" if len(panels) > 2 else "") + ".")
    if not any(_curve(r, key) for s in chosen for r in s.ok for key, _ in panels):
        fig_.skipped = "no curves with test KL / AU recorded"
        return fig_
    fig, axes = _new_figure(3.3 * len(panels), 3.2, len(panels))
    for ax, (key, title) in zip(axes, panels):
        for s in chosen:
            curves = [c for c in (_curve(r, key) for r in s.ok) if c]
            epochs = sorted(set().union(*curves)) if curves else []
            if not epochs:
                continue
            means, stds = [], []
            for e in epochs:
                vals = [c[e] for c in curves if e in c]
                m = math.fsum(vals) / len(vals)
                means.append(m)
                stds.append(_sample_std(vals, m))
            ax.plot(epochs, means, marker="o", ms=2.5, lw=1.2, color=colours[s.method], label=s.legend)
            ax.fill_between(epochs, [m - d for m, d in zip(means, stds)], [m + d for m, d in zip(means, stds)],
                            color=colours[s.method], alpha=0.2, lw=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        if key == "test_au":
            ax.set_ylim(-0.03, 1.03)
        if key == "test_mi":
            _draw_mi_caps(ax, [c for c in (_curve_mi_cap(r) for s in chosen for r in s.ok if _curve(r, key))
                               if c is not None])
    axes[0].legend(loc="best", frameon=True)
    fig_.png, fig_.pdf = _render(fig)
    return fig_


def figure_per_class(dataset: str, chosen: Sequence[Setting]) -> Figure:
    import seaborn as sns

    fig_ = Figure("per_class_au", dataset, f"Per-class AU on {dataset}: fraction of latent dims active within "
                  "each class's test examples, headline setting per method, mean over seeds.")
    rows: dict[str, dict[str, float]] = {}
    for s in chosen:
        per_seed = [(r.record.per_class or {}).get("au") or {} for r in s.ok]
        per_seed = [p for p in per_seed if p]
        if not per_seed:
            continue
        classes = sorted({c for p in per_seed for c in p}, key=_class_order)
        rows[s.method] = {c: math.fsum(p[c] for p in per_seed if c in p) / sum(1 for p in per_seed if c in p)
                          for c in classes}
    if not rows:
        fig_.skipped = f"per-class AU {NOT_RECORDED}"
        return fig_
    classes = sorted({c for r in rows.values() for c in r}, key=_class_order)
    frame = pd.DataFrame([[rows[m].get(c, float("nan")) for c in classes] for m in rows], index=list(rows),
                         columns=classes)
    fig, (ax,) = _new_figure(0.55 * len(classes) + 2.5, 0.4 * len(rows) + 1.4)
    sns.heatmap(frame, ax=ax, vmin=0.0, vmax=1.0, cmap="viridis", annot=True, fmt=".2f", annot_kws={"fontsize": 6},
                cbar_kws={"label": "AU (fraction)"}, linewidths=0.5)
    ax.set_xlabel("class")
    ax.set_ylabel("method")
    ax.set_title(dataset)
    fig_.png, fig_.pdf = _render(fig)
    return fig_


def figure_spectra(dataset: str, chosen: Sequence[Setting], colours: dict[str, Any]) -> Figure:
    thresholds = sorted({(r.record.estimators or {}).get("au_threshold") or r.setting.get("eval.au_threshold")
                         for s in chosen for r in s.ok} - {None})
    fig_ = Figure("spectra", dataset, f"Per-dimension variance spectra on {dataset}: variance over the test set "
                  "of each latent dim's posterior mean, sorted, headline setting per method, mean over seeds; "
                  "dashed: the AU threshold" + (f" {thresholds[0]:g}" if len(thresholds) == 1 else "") + ".")
    lines = []
    for s in chosen:
        spectra = [sorted((float(v) for v in (r.record.vectors or {}).get("au_variances") or []), reverse=True)
                   for r in s.ok]
        spectra = [x for x in spectra if x]
        if spectra and len({len(x) for x in spectra}) == 1:
            lines.append((s, _mean_series(spectra)[0]))
    if not lines:
        fig_.skipped = f"per-dimension variances {NOT_RECORDED}"
        return fig_
    fig, (ax,) = _new_figure(5.5, 3.4)
    floor = 1e-8
    for s, mean in lines:
        ax.plot(range(1, len(mean) + 1), [max(v, floor) for v in mean], marker="o", ms=2.5, lw=1.2,
                color=colours[s.method], label=s.legend)
    for t in thresholds:
        ax.axhline(t, color="0.3", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("latent dimension (sorted by variance)")
    ax.set_ylabel("Var[E q(z|x)] (log)")
    ax.set_title(dataset)
    ax.legend(loc="best", frameon=True)
    fig_.png, fig_.pdf = _render(fig)
    return fig_


def figure_noise(dataset: str, chosen: Sequence[Setting], colours: dict[str, Any]) -> Figure:
    fig_ = Figure("noise", dataset, f"Noise sensitivity on {dataset}: L2 distance of the decoded mean from the "
                  "noiseless decoding, and diversity between noise draws, against the noise variance s^2 added "
                  "to the posterior means; headline setting per method, mean ± std over seeds.")
    found = []
    for s in chosen:
        noises = [r.record.noise or {} for r in s.ok]
        noises = [n for n in noises if n.get("variances") and n.get("distance") and n.get("diversity")]
        if noises and len({json.dumps(n["variances"]) for n in noises}) == 1:
            found.append((s, noises))
    if not found:
        fig_.skipped = f"noise sensitivity {NOT_RECORDED}"
        return fig_
    fig, axes = _new_figure(8.0, 3.2, 2)
    for ax, key in zip(axes, ("distance", "diversity")):
        for s, noises in found:
            xs = [float(v) for v in noises[0]["variances"]]
            means, stds = _mean_series([[float(v) for v in n[key]] for n in noises])
            ax.errorbar(xs, means, yerr=stds, marker="o", ms=3, capsize=2, lw=1.2, color=colours[s.method],
                        label=s.legend)
        ax.set_xlabel("noise variance $s^2$")
        ax.set_title(key)
    axes[0].set_ylabel("L2 in data space")
    axes[0].legend(loc="best", frameon=True)
    fig_.png, fig_.pdf = _render(fig)
    return fig_
