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
