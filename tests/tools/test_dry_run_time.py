"""Timing a dry run of many runs (benchmark/tools/dry_run_time.py): it reports the runs it listed,
and an unknown grid as an error."""


def test_dry_run_time_reports_the_runs_it_listed(capsys):
    from benchmark.tools import dry_run_time
    from conftest import smoke_runs

    assert dry_run_time.main(["--grid", "smoke", "--seeds", "2", "--profile", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"smoke with 2 seeds: {smoke_runs(seeds=2)} runs, dry run ") and "cumulative" in out
    assert dry_run_time.main(["--grid", "no-such-grid", "--seeds", "2"]) == 2
    assert "unknown grid 'no-such-grid'" in capsys.readouterr().err
