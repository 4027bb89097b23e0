"""`python -m benchmark report` on small synthetic run records (and the plan `run` writes beside
them) written by the tests themselves."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.cli import main
from benchmark.report.build import Writer, _old_manifest, build_report
from benchmark.report.stats import N_TOO_SMALL
from benchmark.run.plan import Plan, PlannedRun
from benchmark.run.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent
GRID = "synth"
D = 4  # latent dims

# (method, hyperparameters, seed) -> AU fraction; other metrics derive from it
AU = {
    ("vae", (), 0): 0.25, ("vae", (), 1): 0.25, ("vae", (), 2): 0.5,
    **{("beta-vae", (("beta", 0.1),), seed): au for seed, au in enumerate([1.0, 0.75, 1.0])},
    **{("beta-vae", (("beta", 4.0),), seed): au for seed, au in enumerate([0.0, 0.25, 0.25])},
    ("lr-vae", (("alpha_T", 1.0), ("beta", 0.2)), 0): 1.0,
}
FAILED = ("lr-vae", (("alpha_T", 1.0), ("beta", 0.2)), 1)
DIVERGED = ("lr-vae", (("alpha_T", 1.0), ("beta", 0.2)), 2)
OLD = ("vae", (), 2)  # written before the new fields existed
# The grid as `run` planned it: vae; beta-vae beta = [0.1, 4.0]; lr-vae alpha_T = 1.0, beta = [0.2];
# il-lid-vae L = [0.5] (never run); seeds 0, 1, 2. Each method's entry names these hyperparameters.
NAMED = {"vae": (), "beta-vae": ("beta",), "lr-vae": ("alpha_T", "beta"), "il-lid-vae": ("L",)}
PLANNED = [("vae", ()), ("beta-vae", (("beta", 0.1),)), ("beta-vae", (("beta", 4.0),)),
           ("lr-vae", (("alpha_T", 1.0), ("beta", 0.2))), ("il-lid-vae", (("L", 0.5),))]


def run_id(method: str, hp: tuple, seed: int) -> str:
    return hashlib.sha256(repr((method, hp, seed)).encode()).hexdigest()[:16]


def record(method: str, hp: tuple, seed: int, status: str = "ok") -> dict:
    au = AU.get((method, hp, seed), 0.0)
    rid = run_id(method, hp, seed)
    r = {
        "record_version": 1, "run_id": rid, "grid": GRID, "label": f"{method}{dict(hp)} fashion-mnist seed {seed}",
        "status": status, "error": None, "diverged_epoch": None, "device": "cpu (2 threads)",
        "wall_time_s": 10.0 + seed, "train_time_s": 9.0, "eval_time_s": 1.0, "started_at": "x", "finished_at": "y",
        "environment": {"python": "3.11", "platform": "linux", "packages": {},
                        "git": {"commit": "0123456789abcdef", "dirty": False}},
        "seeds": {}, "method_extras": {},
        "config": {"dataset": {"name": "fashion-mnist", "train_size": 1000, "test_size": 500}, "method": method,
                   "hyperparameters": dict(hp),
                   "model": {"arch": "mlp", "latent_dim": D, "likelihood": "gaussian", "posterior_variance": "logvar",
                             "options": {"hidden": [16], "activation": "relu"}},
                   "train": {"epochs": 3, "batch_size": 32, "lr": 0.001}, "eval": {"au_threshold": 0.01}, "seed": seed},
        "metrics": {}, "vectors": {}, "estimators": {}, "curves": [],
    }
    if status == "failed":
        r["error"] = {"type": "RuntimeError", "message": "CUDA out of memory\nsecond line", "traceback": "Traceback..."}
        return r
    if status == "diverged":
        r.update(diverged_epoch=2,
                 error={"type": "DivergedError", "message": "loss is nan at epoch 2", "traceback": None})
        return r
    r["metrics"] = {"au": au, "au_count": int(au * D), "kl": 2.0 + 10 * au + 0.1 * seed, "mi": 1.0 + 3 * au,
                    "rec": 30.0 - 10 * au + 0.2 * seed, "neg_elbo": 40.0 - au, "mse": 0.02,
                    "nll": 35.0 - 5 * au + 0.3 * seed, "kl_q50": 1.0}
    r["estimators"] = {"split": "test", "examples": 500, "au_threshold": 0.01, "nll_samples": 50}
    r["vectors"] = {"au_variances": [1.0, 0.5 * au + 0.001, 0.02 * au + 0.001, 0.0001],
                    "kl_per_dim": [1.0, 0.5, 0.1, 0.0]}
    r["curves"] = [{"epoch": e, "loss": 50.0 - e, "rec": 40.0 - e, "kl": 3.0 + e,
                    "test_au": min(1.0, au + 0.1 * (3 - e)), "test_au_count": 1, "test_kl": 2.0 + e * au,
                    **({"test_mi": 1.0 + au} if e == 3 else {})}  # MI only on the last epoch
                   for e in (1, 2, 3)]
    r["per_class"] = {"au": {str(c): min(1.0, au + 0.05 * c) for c in range(3)}, "kl": {str(c): 1.0 for c in range(3)}}
    r["noise"] = {"variances": [0.0, 0.5, 1.0], "distance": [0.0, 1.0 + au, 2.0 + au], "diversity": [0.0, 0.5, 0.9],
                  "draws": 8, "points": 16}
    r["artifacts"] = {"reconstructions": f"{rid}.reconstructions.png", "samples": f"{rid}.samples.png"}
    if (method, hp, seed) == OLD:
        for key in ("per_class", "noise", "artifacts"):
            del r[key]
        del r["metrics"]["nll"]
        r["curves"] = [{k: v for k, v in p.items() if k != "test_mi"} for p in r["curves"]]
    return r


def write_results(root: Path) -> Path:
    runs = root / GRID / "runs"
    runs.mkdir(parents=True)
    image = np.linspace(0, 1, 64).reshape(8, 8)
    for (method, hp, seed) in [*AU, FAILED, DIVERGED]:
        status = "failed" if (method, hp, seed) == FAILED else "diverged" if (method, hp, seed) == DIVERGED else "ok"
        r = record(method, hp, seed, status)
        (runs / f"{r['run_id']}.json").write_text(json.dumps(r, indent=1, sort_keys=True))
        for name in r.get("artifacts", {}).values():
            matplotlib.image.imsave(runs / name, image, cmap="gray")
    (runs / "broken0000000000.json").write_text("{not json")
    return root


def write_plan(root: Path) -> None:
    runs = tuple(PlannedRun(run_id(method, hp, seed), f"{method}{dict(hp)} fashion-mnist seed {seed}", NAMED[method],
                            record(method, hp, seed)["config"]) for method, hp in PLANNED for seed in (0, 1, 2))
    ResultStore(root, GRID).write_plan(Plan(GRID, "synthetic", f"{GRID}.toml", runs))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Results, their plan (with a setting never run) and one report built from them."""
    base = tmp_path_factory.mktemp("report")
    results = write_results(base / "results")
    write_plan(results)
    out = base / "reports"
    code, message = build_report(results, out)
    return {"base": base, "results": results, "out": out, "code": code, "message": message}


def test_files_tables_and_headline(built):
    out = built["out"]
    assert built["code"] == 0, built["message"]
    folder = out / GRID
    for stem in ("headline", "vs_vae", "fashion-mnist"):
        for ext in ("md", "tex", "csv"):
            assert (folder / "tables" / f"{stem}.{ext}").stat().st_size > 0
    for kind in ("au_vs_beta", "tradeoff", "curves", "per_class_au", "spectra", "noise"):
        for ext in ("png", "pdf"):
            assert (folder / "figures" / f"{kind}.fashion-mnist.{ext}").stat().st_size > 0, kind
    readme = (out / "README.md").read_text()
    for kind in ("au_vs_beta", "tradeoff", "curves", "per_class_au", "spectra", "noise"):
        assert f"]({GRID}/figures/{kind}.fashion-mnist.png)" in readme
    images = sorted(p.name for p in (folder / "images").iterdir())
    assert images and all(name.endswith((".reconstructions.png", ".samples.png")) for name in images)
    assert all(f"]({GRID}/images/{name})" in readme for name in images)
    manifest = (folder / "MANIFEST").read_text().split()
    assert sorted(manifest) == sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

    # headline: one row per method, the best beta-vae setting is beta = 0.1 (highest AU)
    head = pd.read_csv(folder / "tables" / "headline.csv")
    assert list(head["method"]) == ["vae", "beta-vae", "lr-vae"]
    beta = head.set_index("method").loc["beta-vae"]
    assert beta["hp.beta"] == 0.1 and beta["n"] == 3
    assert beta["au_mean"] == pytest.approx(np.mean([1.0, 0.75, 1.0]))
    assert beta["au_std"] == pytest.approx(np.std([1.0, 0.75, 1.0], ddof=1))
    vae = head.set_index("method").loc["vae"]
    assert vae["nll_n"] == 2 and vae["n"] == 3  # the old record has no IW-NLL
    md = (folder / "tables" / "headline.md").read_text()
    assert "| fashion-mnist | beta-vae | beta=0.1 | 0.917 ± 0.144 |" in md
    assert "| fashion-mnist | lr-vae | alpha_T=1, beta=0.2 | **1.000** |" in md  # one seed: no std
    assert "alpha_T=1, beta=0.2" in readme and "### Headline" in readme
    tex = (folder / "tables" / "headline.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"$0.917 \pm 0.144$" in tex and r"$\mathbf{1.000}$" in tex

    # the full table: every setting, sorted, with the runs that are not ok counted
    full = pd.read_csv(folder / "tables" / "fashion-mnist.csv")
    assert list(zip(full["method"], full["setting"])) == [
        ("vae", "—"), ("beta-vae", "beta=0.1"), ("beta-vae", "beta=4"), ("lr-vae", "alpha_T=1, beta=0.2")]
    assert full.set_index("setting").loc["alpha_T=1, beta=0.2", "not_ok"] == "1 diverged; 1 failed"
    assert "kl_q50_mean" in full.columns


def test_missing_section(built):
    readme = (built["out"] / "README.md").read_text()
    missing = readme.split("### What is missing", 1)[1]
    assert "il-lid-vae (L=0.5) · seeds 0, 1, 2: not run yet" in missing
    assert f"`{run_id(*FAILED)}`" in missing and "RuntimeError: CUDA out of memory" in missing
    assert "second line" not in missing
    assert f"`{run_id(*DIVERGED)}`" in missing and "epoch 2: loss is nan at epoch 2" in missing
    assert "`broken0000000000.json`" in missing
    assert "IW-NLL (`metrics.nll`) not recorded in 1 of 10 ok runs" in missing
    assert "noise sensitivity (`noise`) not recorded in 1 of 10 ok runs" in missing
    assert "beta-vae (beta=0.1)" not in missing  # complete settings are not listed


def test_results_without_a_plan_say_so(tmp_path):
    results = write_results(tmp_path / "results")  # records written before `run` wrote plans
    assert build_report(results, tmp_path / "out")[0] == 0
    missing = (tmp_path / "out" / "README.md").read_text().split("### What is missing", 1)[1]
    assert "no readable `plan.json` beside the records" in missing and "Not run yet" not in missing
    assert f"`{run_id(*FAILED)}`" in missing  # what the records show is still reported


def test_vae_comparison_matches_scipy(built):
    table = pd.read_csv(built["out"] / GRID / "tables" / "vs_vae.csv")
    row = table[(table["setting"] == "beta=0.1") & (table["metric"] == "au")].iloc[0]
    a, b = [1.0, 0.75, 1.0], [0.25, 0.25, 0.5]
    expected = stats.ttest_ind(a, b, equal_var=False)
    assert row["test"] == "welch_t"
    assert row["p"] == pytest.approx(expected.pvalue, rel=1e-8)
    assert row["t"] == pytest.approx(expected.statistic, rel=1e-8)
    pooled = np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    assert row["cohens_d"] == pytest.approx((np.mean(a) - np.mean(b)) / pooled)
    nll = table[(table["setting"] == "beta=0.1") & (table["metric"] == "nll")].iloc[0]
    assert nll["n_vae"] == 2  # the old vae record has no IW-NLL
    nll_a = [35.0 - 5 * 1.0 + 0.0, 35.0 - 5 * 0.75 + 0.3, 35.0 - 5 * 1.0 + 0.6]
    nll_b = [35.0 - 5 * 0.25, 35.0 - 5 * 0.25 + 0.3]
    assert nll["p"] == pytest.approx(stats.ttest_ind(nll_a, nll_b, equal_var=False).pvalue, rel=1e-8)
    lr = table[(table["method"] == "lr-vae") & (table["metric"] == "au")].iloc[0]
    assert pd.isna(lr["p"]) and lr["note"] == N_TOO_SMALL
    readme = (built["out"] / "README.md").read_text()
    assert N_TOO_SMALL in readme


def test_deterministic(built, tmp_path):
    again = tmp_path / "again"
    code, _ = build_report(built["results"], again)
    assert code == 0
    first = {p.relative_to(built["out"]): p.read_bytes() for p in sorted(built["out"].rglob("*")) if p.is_file()}
    second = {p.relative_to(again): p.read_bytes() for p in sorted(again.rglob("*")) if p.is_file()}
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_no_results(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()  # an error, nothing written (tests/test_bad_inputs.py has the rest)
    assert "python -m benchmark run" in capsys.readouterr().err


def test_unknown_grid_is_an_error(built, tmp_path, capsys):
    assert main(["report", "--results", str(built["results"]), "--out", str(tmp_path / "out"), "--grid", "nope"]) == 2
    assert f"grids with records: {GRID}" in capsys.readouterr().err


def test_stale_files_are_removed(tmp_path):
    out = tmp_path / "out"
    (out / "g").mkdir(parents=True)
    (out / "g" / "old.png").write_bytes(b"x")
    (out / "g" / "mine.txt").write_bytes(b"user file")
    (out / "g" / "MANIFEST").write_text("old.png\nMANIFEST\n")
    writer = Writer(out)
    writer.add("g/new.md", "new\n")
    writer.add("g/MANIFEST", "new.md\nMANIFEST\n")
    writer.write({"g": _old_manifest(out, "g")})
    assert sorted(p.name for p in (out / "g").iterdir()) == ["MANIFEST", "mine.txt", "new.md"]


def test_report_never_imports_torch(built, tmp_path):
    """Every module of the report package, and a whole report through the command line."""
    code = ("import importlib, pkgutil, sys, benchmark.report, benchmark.cli\n"
            "for module in pkgutil.iter_modules(benchmark.report.__path__):\n"
            "    importlib.import_module(f'benchmark.report.{module.name}')\n"
            f"assert benchmark.cli.main(['report', '--results', {str(built['results'])!r}, '--out', {str(tmp_path)!r}]) == 0\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
