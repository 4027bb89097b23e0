"""Records identify the code that made them; stale records are rerun and kept, never deleted.

A record's ``code.key`` digests every definition its numbers can depend on, core and plugin alike
(:mod:`benchmark.planning.code_key`): a change to one makes exactly the records that reach it stale,
with no version to bump by hand, and formatting, comments, docstrings and import order change
nothing. The fingerprint test below pins every built-in method's numbers on a tiny grid, so a
change of numbers is always deliberate: rewrite it after one with
``.venv/bin/python tests/planning/test_code_key.py --write`` (drops every other host's entry). The
fingerprint holds one entry per CPU model the suite has run on; on a new host whose numbers agree
with the others at the other-host tolerance, ``--add-host`` adds this host's exact numbers.
"""

from __future__ import annotations

import ast
import json
import math
import shutil
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmark.cli import main  # noqa: E402
from benchmark.planning import code_key  # noqa: E402
from benchmark.planning.code_key import PROJECT_ROOT, changed_units, code_version  # noqa: E402

BUILTIN_METHODS = {"aggressive", "beta-vae", "bn-vae", "cyclical", "delta-vae", "free-bits", "il-lid-vae", "info-vae",
                   "kl-annealing", "lid-vae", "lr-vae", "lstm-lm", "skip-vae", "vae"}
FINGERPRINT = Path(__file__).resolve().parents[1] / "numerics_fingerprint.json"
# Thresholded counts flip on a last-bit difference between CPU models: not part of the fingerprint.
UNSTABLE = {"au", "au_count", "mi_at_cap", "test_au", "test_au_count"}
# On the host the fingerprint was made on the numbers are bit-identical; a change of a formula by
# 1e-4 (the smallest an audit tried: the KL scaled by 1 + 1e-4) moves them by ~1e-4.
RTOL = 1e-5
# Another CPU model runs other kernels: measured up to 2e-5 relative after the grid's 6 steps, 2e-3
# for bn-vae (its batch norm amplifies rounding), so there the test can only catch larger changes.
RTOL_OTHER_HOST = 5e-3
# ... and an absolute floor there: a collapsed KL of ~1e-5 nats differs by ~20% between CPU models
# (bn-vae on PTB: 1.09e-5 on a Xeon, 8.5e-6 on an EPYC); tables print 2 decimals.
ATOL_OTHER_HOST = 1e-4


def fingerprint_grid(tmp_path: Path) -> Path:
    """Every registered method on 2-D points and on PTB sentences (a tiny LSTM), one seed, a
    handful of steps, every metric at tiny sizes."""
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
[[datasets]]
name = "ptb"
train_size = 64
test_size = 32
model = {arch = "lstm-small", embed = 8, hidden = 16, latent_dim = 2}
[[methods]]
name = "*"
''')
    return path


def measure(tmp_path: Path) -> dict[str, dict[str, float]]:
    results = tmp_path / "results"
    assert main(["run", "--grid", str(fingerprint_grid(tmp_path)), "--results", str(results), "--device", "cpu",
                 "--threads", "1"]) == 0
    out = {}
    for path in sorted((results / "fingerprint" / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        if record["config"]["method"] not in BUILTIN_METHODS:
            continue  # a plugin registered by another test
        numbers = {k: v for k, v in record["metrics"].items() if isinstance(v, float) and k not in UNSTABLE}
        numbers.update({f"curve.{k}": v for k, v in record["curves"][-1].items()
                        if isinstance(v, float) and k not in UNSTABLE})
        out[f"{record['config']['method']} {record['config']['dataset']['name']}"] = numbers
    return out


def host() -> dict:
    """What decides the last bits of the fingerprint's numbers: CPU model and instruction sets, torch build."""
    from benchmark.results.provenance import cpu, torch_build

    return {"cpu": cpu(), "torch": torch_build()["version"]}


def fingerprint_entry() -> tuple[dict, bool]:
    """The stored entry to compare this host's numbers with, and whether it was made on this host
    (else the first entry: another CPU model)."""
    entries = json.loads(FINGERPRINT.read_text())["hosts"]
    here = [entry for entry in entries if entry["host"] == host()]
    return (here[0], True) if here else (entries[0], False)


def fingerprint_changes(measured: dict, stored: dict, same_host: bool) -> list[str]:
    """``method.metric: stored -> measured`` for every number outside the tolerance."""
    rtol, atol = (RTOL, 1e-9) if same_host else (RTOL_OTHER_HOST, ATOL_OTHER_HOST)
    return [f"{method}.{key}: {stored[method][key]!r} -> {value!r}"
            for method, numbers in measured.items() for key, value in numbers.items()
            if key in stored[method] and not math.isclose(value, stored[method][key], rel_tol=rtol, abs_tol=atol)]


def test_numbers_match_the_fingerprint(tmp_path):
    entry, same_host = fingerprint_entry()
    if not same_host:
        warnings.warn(f"the numerics fingerprint has no entry for this host ({host()}): compared with {entry['host']} "
                      f"at rtol {RTOL_OTHER_HOST:g} (absolute {ATOL_OTHER_HOST:g}) instead of {RTOL:g}; add this host's "
                      "entry (this file's docstring: --add-host) once the numbers are known to be unchanged")
    measured = measure(tmp_path)
    assert set(measured) == set(entry["methods"])
    changed = fingerprint_changes(measured, entry["methods"], same_host)
    assert not changed, ("the numbers changed: if that is deliberate, rewrite the fingerprint (this file's "
                         "docstring); records the change affects are stale by their code keys. Changed: "
                         + "; ".join(changed[:8]))


def test_a_relative_change_of_1e_4_is_outside_the_fingerprint_tolerance():
    assert not math.isclose(6.37, 6.37 * (1 + 1e-4), rel_tol=RTOL)


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


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project's code (benchmark/ and methods/) to edit."""
    root = tmp_path_factory.mktemp("project")
    for folder in ("benchmark", "methods"):
        shutil.copytree(PROJECT_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def keys(root: Path, runs: dict[str, tuple[str, dict]], packed: bool = True) -> dict[str, str]:
    """Code key of each named run (method, config dict) against the code under ``root``, trained
    in a pack (the closure that reaches the most) or alone."""
    from benchmark.discovery import METHODS

    out = {}
    for name, (method, config) in runs.items():
        cls = METHODS[method]
        source = Path(sys.modules[cls.__module__].__file__).resolve().relative_to(PROJECT_ROOT)
        roots = (*((str(root / f), n) for f, n in code_key.CORE_ROOTS), (str(root / source), cls.__qualname__))
        skip = frozenset() if packed else code_key.PACKED_ONLY
        units = code_key.cached_closure(roots, frozenset(code_key.config_strings(config)), root, skip)
        out[name] = code_key.key_of(units)
    return out


def edit(path: Path, old: str, new: str) -> str:
    """Replace ``old`` (which must occur) by ``new`` in ``path``; returns the old text."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))
    return text


def sample_runs() -> dict[str, tuple[str, dict]]:
    from benchmark.planning.grid import load_grid

    runs = {}
    for config in load_grid("smoke").expand():
        runs.setdefault(f"{config.method} {config.dataset.name}", (config.method, config.to_dict()))
    for config in load_grid("full").expand():
        if config.method in ("vae", "lid-vae") and config.seed == 0:
            runs.setdefault(f"{config.method} {config.dataset.name}", (config.method, config.to_dict()))
    return runs


def test_a_change_to_a_core_formula_makes_every_record_stale(project):
    runs = sample_runs()
    before = keys(project, runs)
    old = edit(project / "benchmark/ml/models.py", "kl = 0.5 * (mu.pow(2)", "kl = 0.50005 * (mu.pow(2)")
    try:
        after = keys(project, runs)
    finally:
        (project / "benchmark/ml/models.py").write_text(old)
    assert all(after[name] != before[name] for name in runs)
    assert keys(project, runs) == before


def test_a_change_to_the_packed_path_makes_only_packed_records_stale(project):
    """A run alone never builds a StackStep (tests/execution/test_runner.py checks that), so the
    closure of its key skips it and everything only it reaches (benchmark/ml/pack.py)."""
    runs = sample_runs()
    alone, packed = keys(project, runs, packed=False), keys(project, runs)
    assert alone != packed
    old = edit(project / "benchmark/ml/pack.py", "(norms + 1e-6)", "(norms + 1e-7)")
    try:
        assert keys(project, runs, packed=False) == alone
        assert all(key != packed[name] for name, key in keys(project, runs).items())
    finally:
        (project / "benchmark/ml/pack.py").write_text(old)
    old = edit(project / "benchmark/ml/models.py", "kl = 0.5 * (mu.pow(2)", "kl = 0.50005 * (mu.pow(2)")
    try:  # a change to the shared path: both stale
        assert all(key != alone[name] for name, key in keys(project, runs, packed=False).items())
    finally:
        (project / "benchmark/ml/models.py").write_text(old)


def test_a_change_to_the_icnn_makes_exactly_the_lid_records_stale(project):
    runs = sample_runs()
    before = keys(project, runs)
    old = edit(project / "benchmark/ml/icnn.py", "NEGATIVE_SLOPE = 0.2", "NEGATIVE_SLOPE = 0.21")
    try:
        after = keys(project, runs)
    finally:
        (project / "benchmark/ml/icnn.py").write_text(old)
    stale = sorted(name for name in runs if after[name] != before[name])
    assert stale and all(name.split()[0] in ("lid-vae", "il-lid-vae") for name in stale)
    assert {name.split()[0] for name in stale} == {"lid-vae", "il-lid-vae"}


def test_a_change_to_one_data_loader_leaves_the_other_data_sets_alone(project):
    runs = sample_runs()
    before = keys(project, runs)
    old = edit(project / "benchmark/data/celeba.py", "CELEBA_CROP = ", "CELEBA_CROP = 1 + ")
    try:
        after = keys(project, runs)
    finally:
        (project / "benchmark/data/celeba.py").write_text(old)
    stale = {name for name in runs if after[name] != before[name]}
    assert stale and all(name.endswith(" celeba") for name in stale)


def reformat(path: Path) -> str:
    """Rewrite ``path`` with other formatting, no comments, reworded docstrings and its imports
    reordered; returns the old text."""
    text = path.read_text()
    tree = ast.parse(text)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    others = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
    doc = others[:1] if others and isinstance(others[0], ast.Expr) else []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            body[0].value.value = "Reworded."
    tree.body = doc + list(reversed(imports)) + others[len(doc):]
    path.write_text("# reformatted\n" + ast.unparse(tree).replace("    ", "        "))
    return text


def test_formatting_comments_docstrings_and_import_order_change_no_key(project):
    runs = sample_runs()
    before = keys(project, runs)
    files = [project / "benchmark/ml/models.py", project / "benchmark/evaluation/metrics.py", project / "benchmark/ml/train.py",
             project / "benchmark/evaluation/evaluate.py", project / "methods/lr_vae.py", project / "methods/lid_vae.py"]
    olds = [reformat(path) for path in files]
    try:
        assert keys(project, runs) == before
    finally:
        for path, old in zip(files, olds):
            path.write_text(old)


def test_a_hyperparameters_doc_and_range_change_no_key_its_default_does(project):
    runs = sample_runs()
    before = keys(project, runs)
    path = project / "methods/vae.py"
    old = edit(path, 'setting(4.0, "[0, inf)", doc="weight of the KL term', 'setting(4.0, "(0, 10]", doc="the KL term\'s weight')
    try:
        assert keys(project, runs) == before
        edit(path, "setting(4.0,", "setting(4.5,")
        after = keys(project, runs)
    finally:
        path.write_text(old)
    stale = {name for name in runs if after[name] != before[name]}
    assert stale and all(name.startswith("beta-vae ") for name in stale)


def test_moving_a_function_to_another_module_changes_no_key(project):
    runs = sample_runs()
    before = keys(project, runs)
    metrics, helper = project / "benchmark/evaluation/metrics.py", project / "benchmark/evaluation/kl_helpers.py"
    text = metrics.read_text()
    tree = ast.parse(text)
    moved = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_kl_elementwise")
    helper.write_text("from torch import Tensor\n\n" + ast.unparse(moved) + "\n")
    tree.body.remove(moved)
    tree.body.insert(1, ast.parse("from .kl_helpers import _kl_elementwise").body[0])
    metrics.write_text(ast.unparse(tree))
    try:
        assert keys(project, runs) == before
    finally:
        metrics.write_text(text)
        helper.unlink()


def test_the_report_the_store_and_the_executor_are_not_in_any_key(project):
    runs = sample_runs()
    before = keys(project, runs)
    paths = [project / "benchmark/results/store.py", project / "benchmark/execution/executor.py",
             project / "benchmark/report/tables.py", project / "benchmark/results/record.py"]
    olds = [p.read_text() for p in paths]
    for p in paths:
        p.write_text(p.read_text() + "\n\ndef added_later():\n    return 1\n")
    try:
        assert keys(project, runs) == before
    finally:
        for p, old in zip(paths, olds):
            p.write_text(old)


def test_a_plugin_helper_module_is_in_its_plugins_key(tmp_path, plugin_dir):
    common = '''
def scale():
    return 1.0
'''
    plugin = PLUGIN.replace("from benchmark.plugin import Method, register_method",
                            "from benchmark.plugin import Method, register_method\nfrom _common import scale")
    plugin = plugin.replace("rec + 1.0 * kl", "rec + scale() * kl")
    folder = plugin_dir({"scaled.py": plugin, "_common.py": common, "_unused.py": common})
    sys.path.insert(0, str(folder))
    try:
        from benchmark.discovery import METHODS

        config = {"method": "scaled", "model": {"arch": "mlp", "likelihood": "gaussian"}, "dataset": {"name": "pinwheel"}}
        before = code_version(METHODS["scaled"], config)
        assert any(label.endswith("_common.py:scale") for label in before["units"])
        (folder / "_unused.py").write_text(common.replace("1.0", "2.0"))
        assert code_version(METHODS["scaled"], config)["key"] == before["key"]
        (folder / "_common.py").write_text(common.replace("1.0", "2.0"))
        after = code_version(METHODS["scaled"], config)
        assert after["key"] != before["key"]
        assert [label.rsplit(":", 1)[1] for label in changed_units(before["units"], after["units"])] == ["scale"]
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("_common", None)


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
    assert sum(line.startswith("stale ") for line in out.splitlines()) == 2
    assert "stale: 2 runs; the code that changed since their records" in out
    assert any(line.strip().startswith(f"{folder.name}/scaled.py:Scaled") or "scaled.py:Scaled  (2)" in line
               for line in out.splitlines())
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

    from benchmark.planning.grid import load_grid
    from benchmark.execution.runner import execute_pack

    folder = plugin_dir({"scaled.py": PLUGIN})
    config = next(r for r in load_grid(grid_file(tmp_path)).expand() if r.method == "scaled")
    config.train.epochs = 2
    checkpoint = tmp_path / "run.pt"
    lines: list[str] = []
    fresh = execute_pack([config], device="cpu", log=lines.append, checkpoint=checkpoint, checkpoint_every=1)[0]
    assert checkpoint.exists() and fresh.record.status == "ok"
    (folder / "scaled.py").write_text(PLUGIN.replace("1.0 * kl", "2.0 * kl"))
    lines.clear()
    execute_pack([config], device="cpu", log=lines.append, checkpoint=checkpoint, checkpoint_every=1)[0]
    assert any("made by other code: starting afresh" in line for line in lines)
    assert not any("resumed from" in line for line in lines)
    del torch


def test_two_plugin_files_registering_one_name_is_an_error(plugin_dir, capsys):
    plugin_dir({"a.py": PLUGIN, "b.py": PLUGIN})
    assert main(["list", "methods"]) == 2
    err = capsys.readouterr().err
    assert "method name 'scaled' is already registered by" in err and "a.py" in err and "b.py" in err


if __name__ == "__main__" and ("--write" in sys.argv or "--add-host" in sys.argv):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        numbers = measure(Path(tmp))
    kept = []
    if "--add-host" in sys.argv:  # the same code on another CPU model: its numbers must agree with every entry
        kept = [entry for entry in json.loads(FINGERPRINT.read_text())["hosts"] if entry["host"] != host()]
        disagree = [change for entry in kept for change in fingerprint_changes(numbers, entry["methods"], False)]
        if disagree:
            sys.exit("not added: this host's numbers differ from the stored ones beyond the other-host tolerance: "
                     + "; ".join(disagree[:8]))
    FINGERPRINT.write_text(json.dumps({"hosts": kept + [{"host": host(), "methods": numbers}]}, indent=1,
                                      sort_keys=True) + "\n")
    print(f"wrote {FINGERPRINT} ({len(kept) + 1} host(s))")


def test_records_of_settings_an_edited_grid_no_longer_holds_are_moved_to_superseded(tmp_path, capsys):
    results, grid = tmp_path / "results", grid_file(tmp_path)
    grid.write_text(grid.read_text().replace('name = "scaled"\n[[methods]]\n', ''))  # vae only
    run = ["run", "--grid", str(grid), "--results", str(results), "--device", "cpu"]
    assert main(run) == 0
    first = sorted(p.stem for p in (results / "tiny" / "runs").glob("*.json"))
    assert len(first) == 2
    assert main(run + ["--seeds", "0", "--dry-run", "--no-estimate"]) == 0  # fewer seeds: no setting left the grid
    assert "no longer holds" not in capsys.readouterr().err
    grid.write_text(grid.read_text().replace('name = "vae"', 'name = "beta-vae"\nbeta = 0.5'))
    assert main(run + ["--dry-run", "--no-estimate"]) == 0
    assert "2 record(s) in" in capsys.readouterr().err and (results / "tiny" / "runs" / f"{first[0]}.json").exists()
    assert main(run) == 0
    assert "2 record(s) in" in capsys.readouterr().err
    now = sorted(p.stem for p in (results / "tiny" / "runs").glob("*.json"))
    assert len(now) == 2 and not set(now) & set(first)
    assert sorted(p.name.split(".")[0] for p in (results / "tiny" / "superseded").glob("*.json")) == first


def test_code_keys_found_once_per_setting_are_each_runs_own():
    from benchmark.planning.grid import load_grid
    from benchmark.planning.code_key import run_code, run_codes
    from benchmark.results.plan import ConfigDicts

    runs = load_grid("smoke").runs(seeds=[0, 1])
    configs = [run.config for run in runs]
    rebuilt = [type(c).from_dict(c.to_dict()) for c in configs[:6]]  # equal values, no shared objects
    assert run_codes(configs + rebuilt) == [run_code(c) for c in configs + rebuilt]
    assert [run.run_id for run in runs] == [c.run_id for c in configs]
    values = ConfigDicts()
    assert [values(c) for c in configs] == [c.to_dict() for c in configs]
