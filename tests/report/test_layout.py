"""Laying a figure out and checking that it was (benchmark/report/layout.py): the check reports
figures laid out badly on purpose (a squeezed panel, overlapping labels, labels outside the figure,
a legend drawn over an axes)."""

from __future__ import annotations

from benchmark.report.figures import figure_style, new_figure
from benchmark.report.layout import layout_problems


def _bad_figures():
    """(what the check must report, figure) for figures laid out badly on purpose."""
    with figure_style():
        fig, (ax,) = new_figure(2.5, 2.0)  # a legend of many long entries below: the panel squeezed
        for i in range(9):
            ax.plot([0, 1], [i, i], label=f"a method with a long setting name {i}")
        fig.legend(loc="outside lower center", ncols=1)
        fig.draw_without_rendering()
        yield "(<", fig  # below a minimum size or share
        fig, (ax,) = new_figure(3.0, 2.0)  # long category labels side by side
        ax.set_xticks(range(6), [f"setting number {i} with words" for i in range(6)])
        fig.draw_without_rendering()
        yield "overlaps", fig
        fig, (ax,) = new_figure(3.0, 2.0)
        fig.set_layout_engine("none")
        ax.set_position([0.02, 0.02, 0.96, 0.96])  # no room for the labels: they fall outside
        ax.set_ylabel("a y label")
        yield "outside the figure", fig
        fig, (ax,) = new_figure(3.0, 2.0)
        ax.plot([0, 1], [0, 1], label="β-VAE")
        ax.legend(loc="center")
        fig.draw_without_rendering()
        yield "drawn over an axes", fig


def test_layout_check_reports_bad_figures():
    for expected, fig in _bad_figures():
        problems = layout_problems(fig)
        assert any(expected in p for p in problems), (expected, problems)


def _laid_out(shift: float):
    """A figure of two subfigures (two panels and a legend each) laid out by constrained layout,
    then every axes and subfigure moved by ``shift`` (a fraction of its container), as two
    processes' solvers may leave it; its PDF bytes after :func:`snap` and without."""
    import io

    import numpy as np
    from matplotlib.transforms import Bbox

    from benchmark.report.figures import PDF_METADATA, blank_figure
    from benchmark.report.layout import snap

    out = []
    for snapped in (True, False):
        with figure_style():
            fig = blank_figure(5.0, 3.0)
            for i, sub in enumerate(fig.subfigures(1, 2)):
                axes = sub.subplots(2, 1)
                for ax in axes:
                    ax.plot([0, 1, 2], [i, 1.5, 0.25], label=f"series {i}")
                sub.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center")
                sub.suptitle(f"block {i}")
            fig.draw_without_rendering()
            fig.set_layout_engine("none")
            for sub in fig.subfigs:
                sub.bbox_relative.set_points(sub.bbox_relative.get_points() + shift)
            for ax in fig.axes:
                ax.set_position(Bbox(np.asarray(ax.get_position(original=True).get_points()) + shift))
            if snapped:
                snap(fig)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="pdf", metadata=PDF_METADATA)
            out.append(buffer.getvalue())
    return out


def test_snap_makes_positions_that_differ_in_their_last_digits_draw_the_same_bytes():
    """Positions 3e-9 apart (the layout solver's noise is about 1e-13) draw different PDF bytes
    unless snapped; snapped, the same bytes."""
    snapped, unsnapped = _laid_out(0.0)
    snapped_shifted, unsnapped_shifted = _laid_out(3e-9)
    assert unsnapped != unsnapped_shifted  # the test can see such a difference
    assert snapped == snapped_shifted
