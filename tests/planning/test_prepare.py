"""What one `run` command does, decided once (benchmark/planning/prepare.py): --force and
--keep-stale are part of the job, and the plan holds the whole grid."""

from __future__ import annotations

from conftest import smoke_runs


def test_force_and_keep_stale_are_part_of_the_job(tmp_path):
    from benchmark.planning.prepare import prepare

    prepared = prepare("smoke", str(tmp_path), methods=["vae"], force=True)
    assert prepared.job.force and len(prepared.job.todo) == len(prepared.job.runs) == 3
    assert set(prepared.states.values()) == {"todo"} and "3 runs, 0 already done (skipped), 3 to run" in prepared.header()
    assert len(prepared.plan.runs) == smoke_runs()  # the plan holds the whole grid
