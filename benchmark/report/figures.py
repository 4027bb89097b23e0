"""What every figure of the report shares: fixed matplotlib settings, each method's fixed colour,
marker and line style and its display name (:mod:`.styles`), legend labels that name a setting by
its hyperparameters (β, α_T, ...) while architectures and other model / train settings become
panels (:func:`facets`), per-seed dots over the mean and its bootstrap CI, n = 1 drawn hollow, a
layout grown for its content (:mod:`.layout`), and PNG (300 dpi) / PDF bytes without dates or
version strings. The figures themselves are in ``figures_*.py``."""

from __future__ import annotations

import contextlib
import io
import math
import textwrap
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .exact import mean_ci
from .format import slug
from .layout import add_legend, fit, snap
from .load import NOT_RECORDED, Run, Setting, not_applicable, order
from .styles import SERIES_LINESTYLES, display_name, part_text, plugin_methods, tex
from .styles import method_style as style_of

PNG_METADATA = {"Software": None}
PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None}
DPI = 300
RC = {"svg.hashsalt": "benchmark-report", "figure.dpi": 100, "savefig.dpi": DPI, "font.size": 8,
      "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5, "xtick.labelsize": 7, "ytick.labelsize": 7,
      "pdf.fonttype": 42, "path.simplify": True, "legend.frameon": True, "legend.framealpha": 0.9}
N1_NOTE = "hollow marker: one ok seed (no spread to show)"
SPREAD_NOTE = ("dots: seeds; filled marker: mean; bar: 95% bootstrap CI of the mean (at least 4 seeds); "
               + N1_NOTE + "; †: fewer ok seeds than planned")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]
CLASS_NAMES = {"fashion-mnist": FASHION_MNIST_CLASSES}
CATEGORY_IN = 0.17  # height of one category (a method's row) on a categorical axis, inches
LABEL_IN = 2.4  # the widest category label, inches (longer ones wrap)
# called with (matplotlib figure, Figure) once a figure is laid out, before its bytes are written
# (the tests check every figure's layout this way)
RENDER_HOOKS: list[Callable[[Any, "Figure"], None]] = []


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
    """The method's fixed colour and marker (:func:`.styles.method_style` has its line style too)."""
    style = style_of(method)
    return style.colour, style.marker


def colour(method: str) -> str:
    return style_of(method).colour


@contextlib.contextmanager
def figure_style(methods: Iterable[str] = ()):
    """Fixed matplotlib settings (defaults + seaborn's whitegrid + RC), whatever the user's matplotlibrc,
    and the plugin styles of ``methods`` (:func:`.styles.plugin_methods`); the previous settings are
    restored afterwards."""
    import matplotlib as mpl
    import seaborn as sns

    with mpl.rc_context(), plugin_methods(methods):
        mpl.rcdefaults()
        mpl.rcParams.update(sns.axes_style("whitegrid"))
        mpl.rcParams.update(RC)
        yield


def render(fig, figure: Figure) -> Figure:
    """Fill ``figure`` with PNG (300 dpi) and PDF bytes without dates or version strings (the
    layout is fixed and its positions rounded first (:func:`.layout.snap`), so both files have the
    same one, whatever the process)."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    snap(fig)
    for hook in RENDER_HOOKS:
        hook(fig, figure)
    png, pdf = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", metadata=PNG_METADATA)
    fig.savefig(pdf, format="pdf", metadata=PDF_METADATA)
    figure.png, figure.pdf = png.getvalue(), pdf.getvalue()
    return figure


def finish(fig, figure: Figure, **sizes: float) -> Figure:
    """Grow ``fig`` until every panel has its minimum size (:func:`.layout.fit`; ``sizes``: its
    ``min_w``, ``min_h``, ...), then :func:`render` it."""
    fit(fig, **sizes)
    return render(fig, figure)


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1, **kwargs):
    """A constrained-layout figure (inches, an Agg canvas attached) and its axes as a flat list."""
    fig = blank_figure(width, height)
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    return fig, [ax for row in axes for ax in row]


def blank_figure(width: float, height: float):
    """A constrained-layout figure (inches, an Agg canvas attached) without axes (for subfigures)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def subfigure_grid(parent, rows: int, cols: int = 1):
    """A grid of subfigures of ``parent`` and the grid (whose height ratios can be set later)."""
    grid = parent.add_gridspec(rows, cols, wspace=0, hspace=0)
    return grid, [[parent.add_subfigure(grid[r, c]) for c in range(cols)] for r in range(rows)]


def legend_below(fig, axes: Sequence[Any], columns: int = 4, note: str | None = None):
    """One legend for the whole figure (or subfigure) below its panels, never over the lines:
    unique labels, as many columns (up to ``columns``) as fit the width."""
    handles, labels = legend_entries(axes)
    return add_legend(fig, handles, labels, max_columns=columns, title=note)


def legend_entries(axes: Iterable[Any]) -> tuple[list[Any], list[str]]:
    """The labelled handles of ``axes``, each label once."""
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels and not label.startswith("_"):
                handles.append(handle)
                labels.append(label)
    return handles, labels


def shade(method: str, k: int, n: int) -> str:
    """The method's colour for its k-th of n settings: lighter towards white as k grows (at most 55%)."""
    from matplotlib.colors import to_hex, to_rgb

    base = to_rgb(colour(method))
    mix = 0.0 if n < 2 else 0.55 * k / (n - 1)
    return to_hex(tuple(c + (1 - c) * mix for c in base))


def series_linestyle(method: str, k: int) -> Any:
    """The line style of a method's k-th series in one panel: the method's own first, then others."""
    own = style_of(method).linestyle
    others = [ls for ls in SERIES_LINESTYLES if ls != own]
    return own if k == 0 else others[(k - 1) % len(others)]


def method_styles(methods: Sequence[str]) -> list[tuple[str, Any]]:
    """Colour and line style per entry of ``methods`` (one per setting or series): the k-th of a
    method's n entries in :func:`shade` (k, n) and :func:`series_linestyle` (k)."""
    totals = {m: sum(1 for x in methods if x == m) for m in methods}
    seen: dict[str, int] = {}
    styles = []
    for method in methods:
        k = seen.setdefault(method, 0)
        seen[method] += 1
        styles.append((shade(method, k, totals[method]), series_linestyle(method, k)))
    return styles


def mi_cap_text(caps: Iterable[float]) -> str:
    """The distinct MI caps log N (nats) as text: "cap log 500 = 6.21; ..."."""
    return "; ".join(f"cap log {round(math.exp(cap))} = {cap:.2f}" for cap in sorted({round(c, 6) for c in caps}))


def draw_mi_caps(ax, caps: Iterable[float], vertical: bool = False) -> None:
    """Each distinct MI cap log N (nats) as a dashed line, labelled at its end; ``vertical`` (the
    MI on the x axis): unlabelled (:func:`mi_cap_text` for the axis label)."""
    for cap in sorted({round(c, 6) for c in caps}):
        if vertical:
            ax.axvline(cap, color="0.3", ls="--", lw=0.8)
        else:
            ax.axhline(cap, color="0.3", ls="--", lw=0.8)
            ax.text(0.99, cap, mi_cap_text([cap]), transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                    fontsize=5.5, color="0.3")


def hp_parts(setting: Setting, skip: Sequence[str] = ()) -> list[str]:
    """The hyperparameter parts of a setting's label as figures show them (β=0.2, α_T=1, ...)."""
    return [part_text(c, t) for c, t in setting.parts if c.startswith("hp.") and c not in skip]


def n_note(setting: Setting) -> str:
    """" (n = 3 of 5)" for a setting short of its plan, " (n = 1)" for one seed, else empty."""
    if setting.short:
        return f" (n = {len(setting.ok)} of {setting.planned})"
    return " (n = 1)" if len(setting.ok) == 1 else ""


def setting_text(setting: Setting, method: bool = True, n: bool = True, skip: Sequence[str] = ()) -> str:
    """A setting as figures name it (plain text): the method's display name, its hyperparameters
    (symbols; not those of ``skip``) and, with ``n``, the seeds when short of the plan or one. Model
    / train settings are left to the panels (:func:`facets`)."""
    parts = hp_parts(setting, skip)
    text = " ".join(([display_name(setting.method)] if method else []) + ([", ".join(parts)] if parts else []))
    return (text or display_name(setting.method)) + (n_note(setting) if n else "")


def facet_key(setting: Setting) -> tuple[str, ...]:
    """The model / train / data settings of a setting's label (everything but hyperparameters)."""
    return tuple(text for c, text in setting.parts if not c.startswith("hp."))


def facet_title(setting: Setting) -> str:
    """Those settings as a panel title: the architecture by name, the others as ``name=value``."""
    return ", ".join(part_text(c, t) for c, t in setting.parts if not c.startswith("hp."))


def facets(settings: Sequence[Setting]) -> list[tuple[str, list[Setting]]]:
    """The settings split by architecture and the other model / train / data settings that differ
    between them (one panel each, titled with them); their order: the settings' own."""
    groups: dict[tuple[str, ...], list[Setting]] = {}
    titles: dict[tuple[str, ...], str] = {}
    for s in settings:
        key = facet_key(s)
        groups.setdefault(key, []).append(s)
        titles.setdefault(key, facet_title(s))
    keys = sorted(groups, key=lambda k: (tuple(order(v) for v in k)))
    return [(titles[k], groups[k]) for k in keys]


def short_titles(groups: Sequence[tuple[str, Sequence[Setting]]]) -> list[str]:
    """Short names of :func:`facets`' groups: the architecture alone where it tells them apart,
    else their full titles."""
    archs = [next((part_text(c, t) for c, t in members[0].parts if c == "model.arch"), None) if members else None
             for _, members in groups]
    if None in archs or len(set(archs)) < len(archs):
        return [title for title, _ in groups]
    return [str(a) for a in archs]


def wrap(text: str, width_in: float, fontsize: float = 7.0) -> str:
    """Plain ``text`` wrapped to lines of about ``width_in`` inches at ``fontsize`` points (0.55 em
    a character on average; words broken only after an underscore, when longer than a line), for
    matplotlib (:func:`.styles.tex`)."""
    chars = max(12, int(width_in * 72 / (0.55 * fontsize)))

    def fill(line: str) -> str:
        words = " ".join(w.replace("_", "_\0 ") if len(w) > chars else w for w in line.split(" "))
        return textwrap.fill(words, chars, break_on_hyphens=False, break_long_words=False).replace("_\0 ", "_")

    return tex("\n".join(fill(line).replace("\0", "") for line in text.split("\n")))


def jitter(i: int, n: int, width: float) -> float:
    """A deterministic offset in [-width/2, width/2] for the i-th of n dots."""
    return 0.0 if n < 2 else width * (i / (n - 1) - 0.5)


def dots_and_mean(ax, x: float, values: Sequence[float], style: tuple[str, str], *, label: str | None = None,
                  log_x: bool = False, spread: float = 0.0, size: float = 4.5, short: bool = False,
                  horizontal: bool = False) -> float | None:
    """Per-seed dots at ``x`` (spread over ``spread``, multiplicative on a log axis), the mean as a
    marker (hollow for one seed) and its 95% bootstrap CI as a bar, and † beside a setting with
    fewer ok seeds than planned (``short``); returns the mean. ``horizontal``: the values along the
    x axis, ``x`` the position on the y axis (a category)."""
    if not values:
        return None
    col, marker = style[0], style[1]
    xs = [x * 10 ** jitter(i, len(values), spread) if log_x else x + jitter(i, len(values), spread)
          for i in range(len(values))]
    mean = math.fsum(values) / len(values)
    ci = mean_ci(values)
    flip = (lambda a, b: (b, a)) if horizontal else (lambda a, b: (a, b))
    ax.scatter(*flip(xs, values), s=6, color=col, alpha=0.45, linewidths=0, zorder=2)
    if ci is not None:
        bar = [[mean - ci[0]], [ci[1] - mean]]
        ax.errorbar(*flip([x], [mean]), **({"xerr": bar} if horizontal else {"yerr": bar}), color=col, lw=1.0,
                    capsize=2, zorder=3, ls="none")
    ax.plot(*flip([x], [mean]), marker=marker, ms=size, color=col, ls="none", label=label, zorder=4,
            markerfacecolor="white" if len(values) == 1 else col, markeredgewidth=1.0)
    if short:
        ax.annotate("†", flip(x, mean), textcoords="offset points", xytext=(4, -2), fontsize=7, color=col,
                    zorder=5)
    return mean


def category_lines(labels: Sequence[str]) -> int:
    """The most lines a category label of ``labels`` wraps to (:func:`categories`)."""
    return max((wrap(label, LABEL_IN).count("\n") + 1 for label in labels), default=1)


def category_height(labels: Sequence[str]) -> float:
    """Inches a categorical y axis of ``labels`` needs: every row as high as the longest label."""
    return len(labels) * (CATEGORY_IN + 0.11 * (category_lines(labels) - 1))


def categories(ax, labels: Sequence[str], axis: str = "y") -> None:
    """Category ``labels`` (plain text, wrapped at :data:`LABEL_IN`) as the ticks 0, 1, ... of
    ``axis``, the first at the top of a y axis."""
    from matplotlib.ticker import FixedLocator, FixedFormatter, NullLocator

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(FixedLocator(list(range(len(labels)))))
    target.set_major_formatter(FixedFormatter([wrap(label, LABEL_IN) for label in labels]))
    target.set_minor_locator(NullLocator())
    limits = (len(labels) - 0.5, -0.5) if axis == "y" else (-0.5, len(labels) - 0.5)
    (ax.set_ylim if axis == "y" else ax.set_xlim)(*limits)
    if axis == "y":
        ax.tick_params(axis="y", length=0)


def ink(image, value: float) -> str:
    """Black or white, whichever reads better on the colour ``image`` gives ``value``."""
    r, g, b, _ = image.cmap(image.norm(value))
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def latent_dims(settings: Iterable[Setting]) -> int | None:
    """The number d of latent dims every one of ``settings`` has (``model.latent_dim``): a figure
    draws AU as a count of them; None where a setting lacks it or they differ (AU drawn as the
    fraction of the latent dims, as the tables show it where the records hold no count)."""
    dims = {s.config.latent_dim for s in settings}
    d = dims.pop() if len(dims) == 1 else None
    return d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None


def au_value(run: Run, d: int | None) -> float | None:
    """A run's valid AU as a count of its ``d`` latent dims (the recorded ``au_count``, else the
    fraction times d), the fraction where ``d`` is None; None where its AU is not valid."""
    au = run.metric("au")
    if au is None or d is None:
        return au
    count = run.metric("au_count")
    return float(count) if count is not None else au * d


def au_values(setting: Setting, d: int | None) -> list[float]:
    """The valid AU of a setting's ok runs (seed order) as counts of ``d`` (:func:`au_value`)."""
    return [v for v in (au_value(r, d) for r in setting.ok) if v is not None]


def au_label(d: int | None, fraction: str = "AU (fraction of latent dims)", what: str = "active units") -> str:
    """An AU axis's label: ``what (of d)``, or ``fraction`` (the label of a fraction) without d."""
    return f"{what} (of {d})" if d else fraction


def au_ticks(d: int) -> list[int]:
    """Ticks 0 ... d of an AU count: a round step (at most 6 steps), d itself always one of them."""
    step = next(s for s in (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 250, 256, 500, 512, 1000,
                            d) if d / s <= 6)
    ticks = list(range(0, d + 1, step))
    if ticks[-1] != d:
        ticks = ticks[:-1] + [d] if d - ticks[-1] < step / 2 else ticks + [d]
    return ticks


def au_axis(ax, d: int | None, axis: str = "y", label: str | None = None) -> None:
    """An AU axis of ``ax``: 0 ... d (integer ticks, :func:`au_ticks`) for a count of d latent dims,
    else 0 ... 1 (a fraction); labelled ``label`` when given."""
    from matplotlib.ticker import FixedLocator, NullLocator

    top = d or 1
    (ax.set_ylim if axis == "y" else ax.set_xlim)(-0.03 * top, 1.03 * top)
    if d:
        target = ax.yaxis if axis == "y" else ax.xaxis
        target.set_major_locator(FixedLocator(au_ticks(d)))
        target.set_minor_locator(NullLocator())
    if label is not None:
        (ax.set_ylabel if axis == "y" else ax.set_xlabel)(label)


def invalid_caption(settings: Sequence[Setting], keys: Sequence[str]) -> str:
    """A caption sentence counting, per metric of ``keys``, the values of ``settings`` left out as
    invalid (empty when none)."""
    names = {"au": "AU", "kl": "KL", "mi": "MI", "nll": "IW-NLL", "rec": "rec", "neg_elbo": "−ELBO"}
    counts = [(names.get(key, key), sum(s.invalid(key) for s in settings)) for key in keys]
    parts = [f"{n} {name} value{'s' if n > 1 else ''}" for name, n in counts if n]
    return (" Not drawn: " + ", ".join(parts) + " invalid (a value its estimator's own check rejects, "
            "docs/metrics.md; listed under What is missing).") if parts else ""


def log_worthy(values: Sequence[float]) -> bool:
    """Positive values spanning at least a factor of 20, or of 4 with two of them closer than 15%
    of the range on a linear axis (0.1, 0.2, 1: their labels would touch): drawn on a log axis."""
    xs = sorted(set(values))
    if not xs or xs[0] <= 0:
        return False
    ratio = xs[-1] / xs[0]
    crowded = len(xs) > 2 and min(b - a for a, b in zip(xs, xs[1:])) < 0.15 * (xs[-1] - xs[0])
    return ratio >= 20 or (ratio >= 4 and crowded)


def tick_values(ax, values: Sequence[float], log: bool) -> None:
    """Ticks exactly at the swept values, labelled with %g (labels that would overlap their
    neighbour are left out when the figure is laid out: :func:`.layout.declutter`)."""
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
