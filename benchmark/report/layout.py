"""Laying a figure out for its content, and checking that it was.

:func:`add_legend` makes a legend below (or beside) its panels with as many columns as fit the
width; :func:`fit` grows a constrained-layout figure until every panel has at least a minimum
size, so legends, long tick labels and titles take their room from the figure, never from the
panels; :func:`declutter` hides the labels of fixed ticks that would overlap their neighbours.
:func:`layout_problems` is the check the tests run on every figure of the report: panels squeezed
below a share of their slot or of the figure, and tick labels, axis labels, titles and legend
entries that overlap one another or fall outside the figure.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# the check's thresholds (layout_problems) and the figures' targets (fit): the targets are above the thresholds
MIN_PANEL_IN = (1.0, 0.7)  # every plotting axes at least this wide and tall (inches)
MIN_IMAGE_IN = 0.9  # an axes showing an image: at least this wide (inches)
MIN_SLOT_SHARE = 0.4  # ... and at least this share of its grid slot's width and height
MIN_FIGURE_SHARE = 0.25  # all plotting axes together: at least this share of the figure's area
TOLERANCE_PX = 1.0  # boxes may touch by this much (pixels at the figure's dpi)


def renderer(fig):
    """The figure's renderer (an Agg canvas is attached where the figure has none)."""
    root = root_figure(fig)
    if not hasattr(root.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(root)
    return root.canvas.get_renderer()


def root_figure(fig):
    while getattr(fig, "_parent", None) is not None:
        fig = fig._parent
    return fig


def plotting_axes(fig) -> list[Any]:
    """The axes that show data (not colorbars, not switched off)."""
    return [ax for ax in root_figure(fig).axes if ax.get_label() != "<colorbar>" and ax.axison]


def add_legend(container, handles: Sequence[Any], labels: Sequence[str], *, loc: str = "outside lower center",
               title: str | None = None, max_columns: int = 6, fontsize: float | None = None):
    """A legend on ``container`` (a figure, subfigure or axes) with as many columns (up to
    ``max_columns``) as fit its width; None without entries."""
    if not handles:
        return None
    width = container.bbox.width if not hasattr(container, "get_position") else root_figure(
        container.figure).bbox.width
    render = renderer(container.figure if hasattr(container, "get_position") else container)
    kwargs = dict(loc=loc, title=title, title_fontsize=6)
    if fontsize is not None:
        kwargs["fontsize"] = fontsize
    for columns in range(min(max_columns, len(handles)), 0, -1):
        legend = container.legend(handles, labels, ncols=columns, **kwargs)
        if columns == 1 or legend.get_window_extent(render).width <= 0.97 * width:
            return legend
        legend.remove()
    return None


SNAP = 1e-6  # positions are rounded to this fraction of their (sub)figure: under 0.015 px at 300 dpi on a 48 in figure


def snap(fig) -> None:
    """Round the position of every axes and the box of every subfigure of a laid-out figure (its
    layout engine switched off) to :data:`SNAP` of its container.

    The constrained-layout solver (kiwisolver) orders its internal arithmetic by memory address, so
    the same figure laid out in two processes can differ in a position's last digits (measured: about
    1e-13 of the figure, enough to change anti-aliased pixels by 4/255 and PDF coordinates in their
    tenth decimal). Rounded, the positions -- and every byte drawn from them -- are the same in every
    process unless a position lies within that noise of a rounding boundary (about one in 10^7)."""
    import numpy as np
    from matplotlib.transforms import Bbox

    def rounded(points):
        return np.round(np.asarray(points, dtype=float) / SNAP) * SNAP + 0.0  # + 0.0: no -0

    root = root_figure(fig)
    for sub in list(_figures(root))[1:]:  # the subfigures (the root comes first)
        sub.bbox_relative.set_points(rounded(sub.bbox_relative.get_points()))
    for ax in root.axes:  # the drawn (active) position follows from the original at draw time
        ax.set_position(Bbox(rounded(ax.get_position(original=True).get_points())))


def panel_size(ax) -> tuple[float, float]:
    """An axes' drawn width and height in inches."""
    box = ax.get_window_extent()
    dpi = root_figure(ax.figure).dpi
    return box.width / dpi, box.height / dpi


def fit(fig, min_w: float = 1.5, min_h: float = 1.1, max_w: float = 13.0, max_h: float = 48.0,
        image_w: float = 1.0) -> None:
    """Grow ``fig`` (constrained layout) until every plotting axes is at least ``min_w`` x
    ``min_h`` inches (an axes showing an image at least ``image_w`` wide), within ``max_w`` x
    ``max_h``; then :func:`declutter` its fixed ticks."""
    for _ in range(8):
        fig.draw_without_rendering()
        if rewrap_titles(fig):
            continue
        short_w = short_h = 0.0
        xs, ys = set(), set()
        for ax in plotting_axes(fig):
            w, h = panel_size(ax)
            box = ax.get_window_extent()
            xs.add(round(box.x0 / fig.dpi, 1))
            ys.add(round(box.y0 / fig.dpi, 1))
            if ax.images and ax.get_aspect() != "auto":
                short_w = max(short_w, image_w - w)
            else:
                short_w, short_h = max(short_w, min_w - w), max(short_h, min_h - h)
        width, height = fig.get_size_inches()
        new = (min(max_w, width + max(short_w, 0) * len(xs) * 1.05 + (0.02 if short_w > 0.005 else 0)),
               min(max_h, height + max(short_h, 0) * len(ys) * 1.05 + (0.02 if short_h > 0.005 else 0)))
        if abs(new[0] - width) < 0.01 and abs(new[1] - height) < 0.01:
            break
        fig.set_size_inches(*new)
    fig.draw_without_rendering()
    declutter(fig)


def rewrap_titles(fig) -> bool:
    """Wrap every axes title wider than its axes, and every subfigure title wider than its
    subfigure, to fit (words are never broken, math stays whole); whether any changed."""
    import textwrap

    render = renderer(fig)
    changed = False
    targets = [(title, ax.get_window_extent(render).width) for ax in root_figure(fig).axes if ax.axison
               for title in (ax.title, ax._left_title, ax._right_title)]
    targets += [(sub._suptitle, sub.bbox.width * 0.98) for sub in _figures(root_figure(fig))
                if getattr(sub, "_suptitle", None) is not None]
    for text, room in targets:
        content = text.get_text()
        if not content.strip() or room <= 0:
            continue
        width = text.get_window_extent(render).width
        if width <= room + TOLERANCE_PX:
            continue
        longest = max(len(line) for line in content.split("\n"))
        chars = max(8, int(longest * room / width * 0.95))
        new = "\n".join(textwrap.fill(line, chars, break_long_words=False, break_on_hyphens=False)
                         for line in content.split("\n"))
        if new != content:
            text.set_text(new)
            changed = True
    return changed


def declutter(fig) -> None:
    """Hide the labels of fixed ticks (swept values, categories) that overlap the previous shown
    label; other locators pick few enough ticks themselves."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    render = renderer(fig)
    for ax in root_figure(fig).axes:
        for axis, horizontal in ((ax.xaxis, True), (ax.yaxis, False)):
            if not isinstance(axis.get_major_locator(), FixedLocator):
                continue
            shown = sorted(((loc, label) for loc, label in visible_tick_labels(ax, axis)),
                           key=lambda item: _centre(item[1].get_window_extent(render), horizontal))
            hidden, last = [], None
            for loc, label in shown:
                box = label.get_window_extent(render)
                if last is not None and _overlaps(last, box, pad=1.5):
                    hidden.append(loc)
                    continue
                last = box
            if hidden:
                texts = {loc: label.get_text() for loc, label in shown}
                axis.set_major_formatter(FuncFormatter(
                    lambda value, pos, texts=texts, hidden=tuple(hidden):
                    "" if any(abs(value - h) <= 1e-12 * max(1.0, abs(h)) for h in hidden) else texts.get(value, "")))


def _centre(box, horizontal: bool) -> float:
    return (box.x0 + box.x1) / 2 if horizontal else (box.y0 + box.y1) / 2


def _overlaps(a, b, pad: float = 0.0) -> bool:
    """Whether boxes ``a`` and ``b`` overlap by more than the tolerance (``pad`` extra space wanted)."""
    t = TOLERANCE_PX - pad
    return min(a.x1, b.x1) - max(a.x0, b.x0) > t and min(a.y1, b.y1) - max(a.y0, b.y0) > t


def visible_tick_labels(ax, axis) -> list[tuple[float, Any]]:
    """(location, label) of the major and minor ticks of ``axis`` drawn inside the view, with text."""
    low, high = sorted(axis.get_view_interval())
    span = max(high - low, 1e-300)
    out = []
    for ticks in (axis.get_major_ticks(len(axis.get_majorticklocs())),
                  axis.get_minor_ticks(len(axis.get_minorticklocs()))):
        for tick in ticks:
            loc = tick.get_loc()
            if loc is None or not (low - 1e-9 * span <= loc <= high + 1e-9 * span):
                continue
            for label in (tick.label1, tick.label2):
                if label.get_visible() and tick.get_visible() and label.get_text().strip():
                    out.append((loc, label))
    return out


@dataclass
class Box:
    what: str
    box: Any  # matplotlib Bbox (display pixels)


def text_boxes(fig) -> list[Box]:
    """Every tick label, axis label, title and legend entry / title of ``fig`` (its subfigures
    included), with what it is; data annotations inside axes are not part of the layout."""
    render = renderer(fig)
    root = root_figure(fig)
    out: list[Box] = []

    def add(what: str, text) -> None:
        if text is not None and text.get_visible() and text.get_text().strip():
            out.append(Box(f"{what} {text.get_text()!r}", text.get_window_extent(render)))

    for i, ax in enumerate(root.axes):
        name = f"axes {i} ({ax.get_title() or ax.get_label() or ''})"
        for axis, letter in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            for _, label in visible_tick_labels(ax, axis):
                add(f"{name}: {letter} tick label", label)
            if axis.label.get_visible():
                add(f"{name}: {letter} label", axis.label)
            add(f"{name}: offset text", axis.get_offset_text())
        for title in (ax.title, ax._left_title, ax._right_title):
            add(f"{name}: title", title)
        legend = ax.get_legend()
        if legend is not None:
            for text in [legend.get_title(), *legend.get_texts()]:
                add(f"{name}: legend", text)
    for container in _figures(root):
        for attr in ("_suptitle", "_supxlabel", "_supylabel"):
            add(f"figure {attr[1:]}", getattr(container, attr, None))
        for legend in container.legends:
            for text in [legend.get_title(), *legend.get_texts()]:
                add("figure legend", text)
    return out


def _figures(root) -> Iterable[Any]:
    yield root
    for sub in getattr(root, "subfigs", []):
        yield from _figures(sub)


def _slot(ax) -> tuple[float, float] | None:
    """Width and height (pixels) of the grid slot an axes was placed in."""
    spec = ax.get_subplotspec()
    if spec is None:
        return None
    grid = spec.get_gridspec()
    container = grid.figure if getattr(grid, "figure", None) is not None else ax.figure
    box = container.bbox
    rows, cols = grid.get_geometry()
    heights = grid.get_height_ratios() or [1] * rows
    widths = grid.get_width_ratios() or [1] * cols
    r0, r1 = spec.rowspan.start, spec.rowspan.stop
    c0, c1 = spec.colspan.start, spec.colspan.stop
    return (box.width * sum(widths[c0:c1]) / sum(widths), box.height * sum(heights[r0:r1]) / sum(heights))


def layout_problems(fig) -> list[str]:
    """What is wrong with the layout of a drawn figure (empty when nothing is):

    - a plotting axes (not a colorbar) narrower than ``MIN_PANEL_IN[0]`` or lower than
      ``MIN_PANEL_IN[1]`` inches (an axes showing an image: narrower than ``MIN_IMAGE_IN``), or
      below ``MIN_SLOT_SHARE`` of its grid slot's width or height;
    - the plotting axes together (pictures aside) below ``MIN_FIGURE_SHARE`` of the figure's area;
    - two of the figure's tick labels, axis labels, titles, legend entries or legend titles
      overlapping (by more than ``TOLERANCE_PX``), or one of them not inside the figure;
    - a legend drawn over a plotting axes.
    """
    root = root_figure(fig)
    render = renderer(root)
    root.canvas.draw()
    dpi = root.dpi
    problems: list[str] = []
    area, charts = 0.0, 0
    panels = plotting_axes(root)
    for ax in panels:
        box = ax.get_window_extent(render)
        w, h = box.width / dpi, box.height / dpi
        name = f"axes {root.axes.index(ax)} ({ax.get_title() or ax.get_xlabel() or ax.get_ylabel()})"
        if ax.images and ax.get_aspect() != "auto":  # a picture: as wide as it is, as high as its aspect makes it
            if w < MIN_IMAGE_IN - 1e-6:
                problems.append(f"{name}: image panel {w:.2f} in wide (< {MIN_IMAGE_IN})")
            continue
        area += box.width * box.height
        charts += 1
        if w < MIN_PANEL_IN[0] - 1e-6 or h < MIN_PANEL_IN[1] - 1e-6:
            problems.append(f"{name}: {w:.2f} x {h:.2f} in (< {MIN_PANEL_IN[0]} x {MIN_PANEL_IN[1]})")
        slot = _slot(ax)
        if slot is not None:
            for size, whole, what in ((box.width, slot[0], "width"), (box.height, slot[1], "height")):
                if whole > 0 and size / whole < MIN_SLOT_SHARE:
                    problems.append(f"{name}: {size / whole:.0%} of its slot's {what} (< {MIN_SLOT_SHARE:.0%})")
    figure_area = root.bbox.width * root.bbox.height
    if charts and area / figure_area < MIN_FIGURE_SHARE:
        problems.append(f"the panels cover {area / figure_area:.0%} of the figure (< {MIN_FIGURE_SHARE:.0%})")
    boxes = text_boxes(root)
    bounds = root.bbox
    for item in boxes:
        b = item.box
        if (b.x0 < bounds.x0 - TOLERANCE_PX or b.y0 < bounds.y0 - TOLERANCE_PX or b.x1 > bounds.x1 + TOLERANCE_PX
                or b.y1 > bounds.y1 + TOLERANCE_PX):
            problems.append(f"{item.what}: outside the figure")
    for a, b in itertools.combinations(boxes, 2):
        if _overlaps(a.box, b.box):
            problems.append(f"{a.what} overlaps {b.what}")
    legends = [legend for ax in root.axes if (legend := ax.get_legend()) is not None]
    legends += [legend for container in _figures(root) for legend in container.legends]
    for legend in legends:
        frame = legend.get_window_extent(render)
        for ax in panels:
            if _overlaps(frame, ax.get_window_extent(render)):
                problems.append(f"a legend ({legend.get_texts()[0].get_text()!r}, ...) is drawn over an axes "
                                f"({ax.get_title() or ax.get_xlabel()})")
    return problems
