"""What every figure of the report shares: fixed matplotlib settings, a fixed colour-blind-safe
colour and marker per method (the same in every report), per-seed dots over the mean and its
bootstrap CI, n = 1 drawn hollow, and PNG (300 dpi) / PDF bytes without dates or version strings.
The figures themselves are in ``figures_*.py``."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
from dataclasses import dataclass
from collections.abc import Iterable, Sequence
from typing import Any

from .exact import mean_ci
from .format import slug, symbol_text
from .load import NOT_RECORDED, Setting, not_applicable

PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None}
DPI = 300
RC = {"svg.hashsalt": "benchmark-report", "figure.dpi": 100, "savefig.dpi": DPI, "font.size": 8,
      "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5, "xtick.labelsize": 7, "ytick.labelsize": 7,
      "pdf.fonttype": 42, "path.simplify": True, "legend.frameon": True, "legend.framealpha": 0.9}

# Okabe-Ito colours (safe for the common colour-vision deficiencies) and one marker per method,
# the same in every report; a method not listed gets a colour and marker from a digest of its name.
OKABE_ITO = ["#000000", "#E69F00", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#F0E442"]
MARKERS = ["o", "s", "D", "^", "v", "P", "X", "h"]
METHOD_STYLE = {"vae": (OKABE_ITO[0], "o"), "beta-vae": (OKABE_ITO[1], "s"), "lr-vae": (OKABE_ITO[2], "D"),
                "lid-vae": (OKABE_ITO[3], "^"), "il-lid-vae": (OKABE_ITO[4], "v")}
LINESTYLES = ["-", "--", ":", "-."]
N1_NOTE = "hollow marker: one ok seed (no spread to show)"
SPREAD_NOTE = ("dots: seeds; filled marker: mean; bar: 95% bootstrap CI of the mean (at least 4 seeds); "
               + N1_NOTE + "; †: fewer ok seeds than planned")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]
CLASS_NAMES = {"fashion-mnist": FASHION_MNIST_CLASSES}


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


def method_style(method: str) -> tuple[str, str]:
    """The method's fixed colour and marker (from a digest of the name for methods not listed)."""
    if method in METHOD_STYLE:
        return METHOD_STYLE[method]
    digest = int(hashlib.sha256(method.encode()).hexdigest(), 16)
    return OKABE_ITO[5 + digest % 3], MARKERS[5 + (digest // 3) % 3]


def colour(method: str) -> str:
    return method_style(method)[0]


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


def render(fig, figure: Figure) -> Figure:
    """Fill ``figure`` with PNG (300 dpi) and PDF bytes without dates or version strings."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    png, pdf = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", metadata=PNG_METADATA)
    fig.savefig(pdf, format="pdf", metadata=PDF_METADATA)
    figure.png, figure.pdf = png.getvalue(), pdf.getvalue()
    return figure


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1, **kwargs):
    """A constrained-layout figure (inches) and its axes as a flat list."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    return fig, [ax for row in axes for ax in row]


def legend_below(fig, axes: Sequence[Any], columns: int = 3, note: str | None = None) -> None:
    """One legend for the whole figure, below the panels (never over the lines), unique labels."""
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels and not label.startswith("_"):
                handles.append(handle)
                labels.append(label)
    if handles:
        # as many columns as fit the figure's width (6.5 pt font: about 3.6 pt a character)
        width_pt = fig.get_figwidth() * 72
        fits = max(1, int(width_pt // (max(len(label) for label in labels) * 3.6 + 30)))
        fig.legend(handles, labels, loc="outside lower center", ncols=min(columns, fits, len(labels)),
                   title=note, title_fontsize=6)


def mpl_text(text: str) -> str:
    """Label text for matplotlib: α_T as math (subscript), other symbols as they are."""
    return text.replace("α_T", r"$\alpha_T$")


def shade(method: str, k: int, n: int) -> str:
    """The method's colour for its k-th of n settings: lighter towards white as k grows (at most 55%)."""
    from matplotlib.colors import to_hex, to_rgb

    base = to_rgb(colour(method))
    mix = 0.0 if n < 2 else 0.55 * k / (n - 1)
    return to_hex(tuple(c + (1 - c) * mix for c in base))


def method_styles(methods: Sequence[str]) -> list[tuple[str, str]]:
    """Colour and line style per entry of ``methods`` (one per setting or series): the k-th of a
    method's n entries in :func:`shade` (k, n) and ``LINESTYLES[k]`` (cycling)."""
    totals = {m: sum(1 for x in methods if x == m) for m in methods}
    seen: dict[str, int] = {}
    styles = []
    for method in methods:
        k = seen.setdefault(method, 0)
        seen[method] += 1
        styles.append((shade(method, k, totals[method]), LINESTYLES[k % len(LINESTYLES)]))
    return styles


def draw_mi_caps(ax, caps: Iterable[float]) -> None:
    """Each distinct MI cap log N (nats) as a dashed line, labelled at the right."""
    for cap in sorted({round(c, 6) for c in caps}):
        ax.axhline(cap, color="0.3", ls="--", lw=0.8)
        ax.text(0.99, cap, f"cap log {round(math.exp(cap))} = {cap:.2f}", transform=ax.get_yaxis_transform(),
                ha="right", va="bottom", fontsize=5.5, color="0.3")


def legend_label(setting: Setting, with_method: bool = True) -> str:
    """Method and setting (symbols), with n when it is short of the plan or one seed."""
    text = (setting.method if with_method else "") + ("" if setting.label == "—" else
                                                      (" " if with_method else "") + symbol_text(setting.label))
    n = len(setting.ok)
    if setting.short:
        text += f" (n = {n} of {setting.planned})"
    elif n == 1:
        text += " (n = 1)"
    return mpl_text(text.strip() or setting.method)


def jitter(i: int, n: int, width: float) -> float:
    """A deterministic offset in [-width/2, width/2] for the i-th of n dots."""
    return 0.0 if n < 2 else width * (i / (n - 1) - 0.5)


def dots_and_mean(ax, x: float, values: Sequence[float], style: tuple[str, str], *, label: str | None = None,
                  log_x: bool = False, spread: float = 0.0, size: float = 4.5, short: bool = False) -> float | None:
    """Per-seed dots at ``x`` (spread over ``spread``, multiplicative on a log axis), the mean as a
    marker (hollow for one seed) and its 95% bootstrap CI as a bar, and † beside a setting with
    fewer ok seeds than planned (``short``); returns the mean."""
    if not values:
        return None
    col, marker = style
    xs = [x * 10 ** jitter(i, len(values), spread) if log_x else x + jitter(i, len(values), spread)
          for i in range(len(values))]
    ax.scatter(xs, values, s=6, color=col, alpha=0.45, linewidths=0, zorder=2)
    mean = math.fsum(values) / len(values)
    ci = mean_ci(values)
    if ci is not None:
        ax.errorbar([x], [mean], yerr=[[mean - ci[0]], [ci[1] - mean]], color=col, lw=1.0, capsize=2, zorder=3,
                    ls="none")
    ax.plot([x], [mean], marker=marker, ms=size, color=col, ls="none", label=label, zorder=4,
            markerfacecolor="white" if len(values) == 1 else col, markeredgewidth=1.0)
    if short:
        ax.annotate("†", (x, mean), textcoords="offset points", xytext=(4, -2), fontsize=7, color=col, zorder=5)
    return mean


def invalid_caption(settings: Sequence[Setting], keys: Sequence[str]) -> str:
    """A caption sentence counting, per metric of ``keys``, the values of ``settings`` left out as
    invalid (empty when none)."""
    names = {"au": "AU", "kl": "KL", "mi": "MI", "nll": "IW-NLL", "rec": "rec", "neg_elbo": "−ELBO"}
    counts = [(names.get(key, key), sum(s.invalid(key) for s in settings)) for key in keys]
    parts = [f"{n} {name} value{'s' if n > 1 else ''}" for name, n in counts if n]
    return (" Not drawn: " + ", ".join(parts) + " invalid (a value its estimator's own check rejects, "
            "docs/metrics.md; listed under What is missing).") if parts else ""


def log_worthy(values: Sequence[float]) -> bool:
    """Positive values spanning at least a factor of 20: drawn on a log axis."""
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 20


def tick_values(ax, values: Sequence[float], log: bool) -> None:
    """Ticks exactly at the swept values, labelled with %g."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    if log:
        ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(values))))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def rec_unit(settings: Sequence[Setting]) -> str:
    """The unit of ``rec`` for these settings' likelihoods."""
    likelihoods = {s.likelihood for s in settings}
    if likelihoods == {"gaussian"}:
        return "sum of squared errors per image"
    if likelihoods == {"bernoulli"}:
        return "binary cross-entropy per image, nats"
    if likelihoods == {"categorical"}:
        return "−log p(x|z) per sentence, nats"
    return "likelihood units per image"


def not_drawn(settings: Sequence[Setting], step: str, what: str) -> str:
    """Why a figure of evaluation ``step`` has nothing to draw: the reason the runs record it as not
    applicable to their data (``estimators.not_applicable``), else ``what`` is not recorded."""
    reason = not_applicable(settings, step)
    return f"not applicable: {reason}" if reason else f"{what} {NOT_RECORDED}"


def class_names(dataset: str, classes: Sequence[str]) -> list[str]:
    """Readable class names (Fashion-MNIST's garment names), else the labels themselves."""
    names = CLASS_NAMES.get(dataset)
    return [names[int(c)] if names and c.isdigit() and int(c) < len(names) else c for c in classes]
