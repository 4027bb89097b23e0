"""What produced a result besides its code (benchmark/results/provenance.py): the git commit's
dirty flag ignores results/ and reports/, which every run writes."""

from __future__ import annotations


def test_the_git_dirty_flag_ignores_results_and_reports(tmp_path, monkeypatch):
    """Writing results (as every run does) leaves a record's commit clean; editing code does not."""
    import subprocess
    from benchmark.results import provenance

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    for path in ("benchmark/core.py", "results/g/runs.csv", "reports/g/README.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("0\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path)

    def dirty() -> bool:
        provenance.git_commit.cache_clear()
        return provenance.git_commit()["dirty"]

    (tmp_path / "results/g/runs.csv").write_text("1\n")
    (tmp_path / "reports/g/README.md").write_text("1\n")
    assert dirty() is False
    (tmp_path / "benchmark/core.py").write_text("1\n")
    assert dirty() is True
    provenance.git_commit.cache_clear()
