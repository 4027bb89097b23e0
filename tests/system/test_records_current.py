"""Every committed record was made by the code of this commit: for each grid with records under
``results/``, ``run`` would rerun none of its runs (every planned run is ``done``: an ``ok``
record whose code key is today's, :mod:`benchmark.planning.code_key`).

A change to code that a committed run's numbers depend on makes its records stale, and the numbers
in ``reports/``, the README and docs/ then describe other code than this commit's. Such a change
lands together with an entry in :data:`BEING_RERUN` (the grid and why), which the README and
docs/results.md must then name as stale; the entry goes when the grid's rerun is committed (the
test fails while an entry names a grid that is current again, so it cannot be forgotten).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.planning.prepare import prepare

ROOT = Path(__file__).resolve().parents[2]
# grid -> why its records are not all current yet (its rerun in progress)
WHY = ("the training loop's data gather, the method contract (pack_training_step), aggressive's block rule, "
       "il-lid-vae's per-map constant and checkpoints by time changed code every run executes")
BEING_RERUN: dict[str, str] = {grid: WHY for grid in ("remedies", "paper-fmnist", "ptb-quick")}


def committed_grids() -> list[str]:
    """The grids with a plan and records under ``results/``."""
    return sorted(path.parent.name for path in (ROOT / "results").glob("*/plan.json")
                  if any((path.parent / "runs").glob("*.json")))


def test_the_committed_grids_are_found():
    assert {"quick", "remedies", "paper-fmnist", "ptb-quick"} <= set(committed_grids())


@pytest.mark.parametrize("grid", committed_grids())
def test_every_committed_record_is_current(grid):
    prepared = prepare(grid, str(ROOT / "results"))
    not_done = sorted(run_id for run_id, state in prepared.states.items() if state != "done")
    if grid in BEING_RERUN:
        assert not_done, f"{grid}'s records are all current: remove its BEING_RERUN entry and say so in the docs"
        for doc in ("README.md", "docs/results.md"):
            text = (ROOT / doc).read_text()
            assert any(f"`{grid}`" in paragraph and "stale" in paragraph for paragraph in text.split("\n\n")), \
                f"{doc} must name `{grid}` as stale (in one paragraph) while it is being rerun"
        return
    assert not_done == [], (f"{len(not_done)} of {len(prepared.states)} runs of {grid} are not done "
                            f"({', '.join(sorted(set(prepared.states[r] for r in not_done)))}):\n"
                            + "\n".join(prepared.stale_summary())
                            + f"\nrerun them (python -m benchmark run --grid {grid}) and commit the records, "
                              "or list the grid in BEING_RERUN while its rerun is in progress")
