"""Records identify the code that made them; stale records are rerun and kept, never deleted.

A record's ``code.key`` combines the digests of its method's plugin files (syntax trees without
docstrings, comments or formatting) with the core's ``NUMERICS_VERSION``. The fingerprint test
below pins every built-in method's numbers at that version: a change to ``benchmark/`` that
changes a number fails it until the version is bumped (and the fingerprint rewritten), and a
refactor that changes no number passes it, so it invalidates no record.

Rewrite the fingerprint after a deliberate change of numbers (and a bump of NUMERICS_VERSION):
``.venv/bin/python tests/test_code_version.py --write``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmark.cli import main  # noqa: E402
from benchmark.run.provenance import NUMERICS_VERSION, code_version, source_digest  # noqa: E402

FINGERPRINT = Path(__file__).resolve().parent / "numerics_fingerprint.json"
# Thresholded counts flip on a last-bit difference between CPU models: not part of the fingerprint.
UNSTABLE = {"au", "au_count", "mi_at_cap", "test_au", "test_au_count"}
RTOL = 1e-3  # a few float32 steps differ across CPU kernels by ~1e-6; a real change by far more


def fingerprint_grid(tmp_path: Path) -> Path:
    """Every registered method, one seed, a handful of steps, every metric at tiny sizes."""
    path = tmp_path / "fingerprint.toml"
    path.write_text('''
seeds = [3]
[train]
epochs = 2
batch_size = 32
[model]
hidden = [32]
latent_dim = 2
[eval]
nll_samples = 8
nll_examples = 32
geometry_points = 4
noise_points = 4
noise_draws = 2
mi_curve_every = 1
[[datasets]]
name = "pinwheel"
train_size = 96
test_size = 64
[[methods]]
name = "*"
''')
    return path


def measure(tmp_path: Path) -> dict[str, dict[str, float]]:
    from benchmark.discovery import BUILTIN_PLUGIN_DIR

    results = tmp_path / "results"
    assert main(["run", "--grid", str(fingerprint_grid(tmp_path)), "--results", str(results), "--device", "cpu",
                 "--threads", "1"]) == 0
    out = {}
    for path in sorted((results / "fingerprint" / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        if not any(Path(f).parent == BUILTIN_PLUGIN_DIR.relative_to(BUILTIN_PLUGIN_DIR.parent)
                   for f in record["code"]["method_files"]):
            continue  # a plugin registered by another test
        numbers = {k: v for k, v in record["metrics"].items() if isinstance(v, float) and k not in UNSTABLE}
        numbers.update({f"curve.{k}": v for k, v in record["curves"][-1].items()
                        if isinstance(v, float) and k not in UNSTABLE})
        out[record["config"]["method"]] = numbers
    return out


def test_numbers_match_the_fingerprint_of_this_numerics_version(tmp_path):
    stored = json.loads(FINGERPRINT.read_text())
    assert stored["numerics_version"] == NUMERICS_VERSION, (
        "NUMERICS_VERSION was bumped: rewrite the fingerprint (see this file's docstring)")
    measured = measure(tmp_path)
    assert set(measured) == set(stored["methods"])
    changed = [f"{method}.{key}: {stored['methods'][method][key]!r} -> {value!r}"
               for method, numbers in measured.items() for key, value in numbers.items()
               if key in stored["methods"][method]
               and not math.isclose(value, stored["methods"][method][key], rel_tol=RTOL, abs_tol=1e-6)]
    assert not changed, ("the core's numbers changed: bump NUMERICS_VERSION in benchmark/run/provenance.py (so records "
                         "made before are rerun) and rewrite the fingerprint; changed: " + "; ".join(changed[:8]))


PLUGIN = '''
"""A plugin."""
from benchmark.plugin import Method, register_method


@register_method
class Scaled(Method):
    """rec + KL times a constant."""

    name = "scaled"

    def loss(self, x, progress):
        out = self.model(x)
        rec, kl = out.rec.mean(), out.kl.mean()
        return {"loss": rec + 1.0 * kl, "rec": rec, "kl": kl}
'''


def test_digest_ignores_docs_comments_formatting_and_import_paths(tmp_path):
    path = tmp_path / "p.py"
    path.write_text(PLUGIN)
    base = source_digest(path)
    same = (PLUGIN.replace('"""rec + KL times a constant."""', '"""Reworded."""  # and a comment')
            .replace("from benchmark.plugin import", "from benchmark.ml.method import")
            .replace("rec + 1.0 * kl", "rec + (1.0*kl)"))
    path.write_text(same)
    assert source_digest(path) == base
    path.write_text(PLUGIN.replace("rec + 1.0 * kl", "rec + 1.5 * kl"))
    assert source_digest(path) != base
    path.write_text(PLUGIN.replace("from benchmark.plugin import", "from somewhere_else import"))
    assert source_digest(path) != base  # code from outside this package is not covered by the core's version


def test_code_version_combines_plugin_digests_and_numerics_version(tmp_path):
    path = tmp_path / "p.py"
    path.write_text(PLUGIN)
    version = code_version([path])
    assert version["numerics_version"] == NUMERICS_VERSION and list(version["method_files"].values()) == [source_digest(path)]
    path.write_text(PLUGIN.replace("1.0 * kl", "2.0 * kl"))
    assert code_version([path])["key"] != version["key"]


def grid_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text('''
seeds = [0, 1]
[train]
epochs = 1
batch_size = 32
[model]
hidden = [16]
latent_dim = 2
[eval]
nll_samples = 0
geometry_points = 0
noise_points = 0
[[datasets]]
name = "pinwheel"
train_size = 64
test_size = 32
[[methods]]
name = "scaled"
[[methods]]
name = "vae"
''')
    return path


def test_stale_records_are_listed_rerun_and_kept(tmp_path, plugin_dir, capsys):
    folder = plugin_dir({"scaled.py": PLUGIN})
    results, grid = tmp_path / "results", str(grid_file(tmp_path))
    run = ["run", "--grid", grid, "--results", str(results), "--device", "cpu"]
    assert main(run) == 0
    runs = results / "tiny" / "runs"
    first = {p.stem: json.loads(p.read_text()) for p in runs.glob("*.json")}
    assert len(first) == 4 and all(r["code"]["key"] for r in first.values())
    capsys.readouterr()

    # a docstring edit changes nothing; a changed number makes the plugin's two records stale
    (folder / "scaled.py").write_text(PLUGIN.replace('"""A plugin."""', '"""A plugin, documented."""'))
    assert main(run + ["--dry-run", "--no-estimate"]) == 0
    assert "4 already done (skipped), 0 to run" in capsys.readouterr().err
    (folder / "scaled.py").write_text(PLUGIN.replace("1.0 * kl", "2.0 * kl"))
    assert main(run + ["--dry-run", "--no-estimate"]) == 0
    out, err = capsys.readouterr()
    assert "2 already done (skipped), 2 to run (2 stale" in err and "--keep-stale" in err
    assert sum(line.startswith("stale") for line in out.splitlines()) == 2
    assert main(run + ["--keep-stale", "--dry-run", "--no-estimate"]) == 0
    assert "4 already done (skipped), 0 to run" in capsys.readouterr().err

    assert main(run) == 0
    second = {p.stem: json.loads(p.read_text()) for p in runs.glob("*.json")}
    assert set(second) == set(first)  # same run ids
    changed = [rid for rid in first if second[rid]["code"]["key"] != first[rid]["code"]["key"]]
    assert sorted(second[rid]["config"]["method"] for rid in changed) == ["scaled", "scaled"]
    kept = sorted(p.name for p in (results / "tiny" / "superseded").glob("*.json"))
    assert kept == sorted(f"{rid}.{first[rid]['code']['key']}.json" for rid in changed)
    for rid in changed:  # the superseded record is the old one, intact
        old = json.loads((results / "tiny" / "superseded" / f"{rid}.{first[rid]['code']['key']}.json").read_text())
        assert old["metrics"] == first[rid]["metrics"]
    assert main(run) == 0
    assert "4 already done (skipped), 0 to run" in capsys.readouterr().err


def test_checkpoint_of_other_code_is_not_resumed(tmp_path, plugin_dir):
    import torch

    from benchmark.grid import load_grid
    from benchmark.run.runner import execute

    folder = plugin_dir({"scaled.py": PLUGIN})
    config = next(r for r in load_grid(grid_file(tmp_path)).expand() if r.method == "scaled")
    config.train.epochs = 2
    checkpoint = tmp_path / "run.pt"
    lines: list[str] = []
    fresh = execute(config, device="cpu", log=lines.append, checkpoint=checkpoint, checkpoint_every=1)
    assert checkpoint.exists() and fresh.record.status == "ok"
    (folder / "scaled.py").write_text(PLUGIN.replace("1.0 * kl", "2.0 * kl"))
    lines.clear()
    execute(config, device="cpu", log=lines.append, checkpoint=checkpoint, checkpoint_every=1)
    assert any("made by other code: starting afresh" in line for line in lines)
    assert not any("resumed from" in line for line in lines)
    del torch


def test_two_plugin_files_registering_one_name_is_an_error(plugin_dir, capsys):
    plugin_dir({"a.py": PLUGIN, "b.py": PLUGIN})
    assert main(["list", "methods"]) == 2
    err = capsys.readouterr().err
    assert "method name 'scaled' is already registered by" in err and "a.py" in err and "b.py" in err


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        FINGERPRINT.write_text(json.dumps({"numerics_version": NUMERICS_VERSION, "methods": measure(Path(tmp))},
                                          indent=1, sort_keys=True) + "\n")
    print(f"wrote {FINGERPRINT}")
