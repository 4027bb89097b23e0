"""`python -m benchmark report` (benchmark/report/build.py) on small synthetic run records
(tests/fake_records.py) and the plan `run` writes beside them, written by the tests themselves."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.cli import main
from benchmark.report.build import Writer, headline_blocks, _old_manifest, build_report
from benchmark.report.load import load_grid_records
from benchmark.report.missing import missing_section
from benchmark.report.pages import Page
from benchmark.report.stats import compare_with_vae
from benchmark.report.tables import headlines, p_text
from benchmark.report.exact import permutation_test
from benchmark.results.plan import Plan, PlannedRun
from benchmark.results.store import ResultStore

from fake_records import AU, D, DIVERGED, FAILED, GRID, record, run_id, write_records

ROOT = Path(__file__).resolve().parents[2]

# The grid as `run` planned it: vae; beta-vae beta = [0.1, 4.0]; lr-vae alpha_T = 1.0, beta = [0.2];
# il-lid-vae L = [0.5] (never run); seeds 0, 1, 2. Each method's entry names these hyperparameters.
NAMED = {"vae": (), "beta-vae": ("beta",), "lr-vae": ("alpha_T", "beta"), "il-lid-vae": ("L",)}
PLANNED = [("vae", ()), ("beta-vae", (("beta", 0.1),)), ("beta-vae", (("beta", 4.0),)),
           ("lr-vae", (("alpha_T", 1.0), ("beta", 0.2))), ("il-lid-vae", (("L", 0.5),))]


def write_results(root: Path) -> Path:
    records = []
    for (method, hp, seed) in [*AU, FAILED, DIVERGED]:
        status = "failed" if (method, hp, seed) == FAILED else "diverged" if (method, hp, seed) == DIVERGED else "ok"
        records.append(record(method, hp, seed, status))
    write_records(root / GRID / "runs", records)
    (root / GRID / "runs" / "broken0000000000.json").write_text("{not json")
    return root


HEADLINE = ({"method": "beta-vae", "hyperparameters": {"beta": 4.0}},
            {"method": "lr-vae", "hyperparameters": {"alpha_T": 1.0, "beta": 0.2}})


def write_plan(root: Path, headline: tuple = HEADLINE) -> None:
    runs = tuple(PlannedRun.from_dict({"run_id": run_id(method, hp, seed), "label": f"{method}{dict(hp)} fashion-mnist seed {seed}",
                                       "named": list(NAMED[method]), "config": record(method, hp, seed)["config"]})
                 for method, hp in PLANNED for seed in (0, 1, 2))
    ResultStore(root, GRID).write_plan(Plan(GRID, "synthetic", f"{GRID}.toml", runs, headline=headline))


# A second grid with what the paper's sections need: two data sets, two architectures on one of
# them, lr-vae under two alpha schedules, noise grids; 2 seeds.
PAPER = "paper"
PAPER_SETTINGS = [(ds, arch, method, schedule) for ds in ("fashion-mnist", "mnist")
                  for arch in (("mlp-shallow", "mlp-deep") if ds == "fashion-mnist" else ("mlp-shallow",))
                  for method, schedule in (("vae", None), ("lr-vae", "linear"), ("lr-vae", "constant"))]


def paper_record(dataset: str, arch: str, method: str, schedule: str | None, seed: int) -> dict:
    hp = (("alpha_T", 1.0), ("alpha_schedule", schedule), ("beta", 0.2)) if schedule else ()
    r = record(method, hp, seed)
    r["run_id"] = run_id(method, hp + (dataset, arch), seed)
    r["grid"] = PAPER
    r["config"]["dataset"]["name"] = dataset
    r["config"]["model"]["arch"] = arch
    au = {"vae": 0.25, "linear": 1.0, "constant": 0.5}[schedule or method] - (0.25 if arch == "mlp-deep" else 0.0)
    au += 0.25 * seed * (method == "vae")
    r["metrics"].update(au=au, au_count=round(au * D), kl=2.0 + 10 * au + seed)
    r["curves"] = [{**p, "alpha": 0.5 * p["epoch"], "test_au": au} for p in r["curves"]]
    r["artifacts"] = {"noise": f"{r['run_id']}.noise.png"}
    for key in ("vectors", "per_class"):  # figures the first grid already draws: kept out to keep the tests fast
        r.pop(key)
    if dataset == "mnist":  # the second data set only for the summary across data sets
        for key in ("noise", "artifacts", "curves"):
            r.pop(key)
    return r


def write_paper(root: Path) -> None:
    records = [paper_record(*setting, seed) for setting in PAPER_SETTINGS for seed in (0, 1)]
    write_records(root / PAPER / "runs", records)
    runs = tuple(PlannedRun.from_dict(dict(r, named=["alpha_T", "alpha_schedule", "beta"] if r["config"]["method"] ==
                                           "lr-vae" else [])) for r in records)
    headline = ({"method": "lr-vae", "hyperparameters": {"alpha_T": 1.0, "beta": 0.2, "alpha_schedule": "linear"}},)
    ResultStore(root, PAPER).write_plan(Plan(PAPER, "paper sections", f"{PAPER}.toml", runs, headline=headline))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Results, their plans (with a setting never run) and one report built from them."""
    base = tmp_path_factory.mktemp("report")
    results = write_results(base / "results")
    write_plan(results)
    write_paper(results)
    out = base / "reports"
    code, message = build_report(results, out)
    return {"base": base, "results": results, "out": out, "code": code, "message": message}


FIGURES = ("au_vs_beta", "sweep", "rate_distortion", "curves", "per_class_au", "spectra", "kl_per_dim", "noise",
           "images_reconstructions", "images_samples", "images_traversals")


def test_files_tables_and_headline(built):
    out = built["out"]
    assert built["code"] == 0, built["message"]
    folder = out / GRID
    for stem in ("headline", "fashion-mnist", "vs_vae.au", "vs_vae.au.fashion-mnist", "vs_vae.nll.fashion-mnist"):
        for ext in ("md", "tex"):
            assert (folder / "tables" / f"{stem}.{ext}").stat().st_size > 0, stem
    for name in ("headline.csv", "fashion-mnist.csv", "vs_vae.csv", "per_seed.csv"):
        assert (folder / "tables" / name).stat().st_size > 0
    for kind in FIGURES:
        for ext in ("png", "pdf"):
            assert (folder / "figures" / f"{kind}.fashion-mnist.{ext}").stat().st_size > 0, kind
        assert f"](figures/{kind}.fashion-mnist.png)" in (folder / "fashion-mnist.md").read_text()
    png = matplotlib.image.imread(folder / "figures" / "au_vs_beta.fashion-mnist.png")
    assert png.shape[1] >= 1500  # 300 dpi
    for page in ("README.md", "index.html", f"{GRID}/fashion-mnist.html", f"{GRID}/runs.html", f"{GRID}/runs.md"):
        assert (out / page).stat().st_size > 0, page
    manifest = (folder / "MANIFEST").read_text().split()
    assert sorted(manifest) == sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

    # the headline is the plan's (declared in the grid): beta-vae at beta = 4, not its best-AU setting 0.1
    head = pd.read_csv(folder / "tables" / "headline.csv")
    assert list(head["method"]) == ["vae", "beta-vae", "lr-vae"]
    beta = head.set_index("method").loc["beta-vae"]
    assert beta["hp.beta"] == 4.0 and beta["n"] == 3
    assert beta["au_mean"] == pytest.approx(np.mean([0.0, 0.25, 0.25]))
    assert beta["au_std"] == pytest.approx(np.std([0.0, 0.25, 0.25], ddof=1))
    assert beta["au_p_exact_vs_vae"] == pytest.approx(permutation_test([0.0, 0.25, 0.25], [0.25, 0.25, 0.5]).p)
    assert json.loads(beta["seeds"]) == [0, 1, 2]
    vae = head.set_index("method").loc["vae"]
    assert vae["nll_n"] == 2 and vae["n"] == 3  # the old record has no IW-NLL
    lr = head.set_index("method").loc["lr-vae"]
    assert lr["short"] and lr["planned"] == 3 and lr["n"] == 1
    md = (folder / "tables" / "headline.md").read_text()
    assert "| beta-vae | β=4 | 0.7/4 ± 0.6 |" in md  # AU as a count of the 4 latent dims; one data set: no column
    # one seed (no std; short: †): 4 of 4 units, not bold: one seed cannot be told from the vae's three
    assert "| lr-vae | α_T=1, β=0.2 † | 4/4 |" in md
    assert "| 1 of 3 |" in md and "| 1 1 2 |" in md  # n of the plan; per-seed AU counts
    assert "AU ↑" in md and "IW-NLL ↓" in md and "−ELBO ↓" in md and "time" not in md.splitlines()[0]
    assert md.count("Bold: the best mean of a column") == 1
    tex = (folder / "tables" / "headline.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"$0.7/4{\scriptstyle\,\pm0.6}$" in tex
    assert r"$\alpha_T$=1, $\beta$=0.2" in tex and r"AU $\uparrow$" in tex and r"\mathbf" not in tex
    assert "beta-vae" not in tex and r"$\beta$-VAE" in tex and "of grid synth on fashion-mnist" in tex

    # the full table: every setting, sorted, with the runs that are not ok counted
    full = pd.read_csv(folder / "tables" / "fashion-mnist.csv")
    assert list(zip(full["method"], full["setting"])) == [
        ("vae", "—"), ("beta-vae", "beta=0.1"), ("beta-vae", "beta=4"), ("lr-vae", "alpha_T=1, beta=0.2")]
    assert full.set_index("setting").loc["alpha_T=1, beta=0.2", "not_ok"] == "1 diverged; 1 failed"
    assert "kl_q50_mean" in full.columns
    seeds = pd.read_csv(folder / "tables" / "per_seed.csv")
    au = seeds[(seeds["setting"] == "beta=0.1") & (seeds["metric"] == "au")]
    assert list(au["seed"]) == [0, 1, 2] and list(au["value"]) == [1.0, 0.75, 1.0]

    # the README's table: the headline settings, AU counts per seed, Δ MI against vae with its exact p
    readme = (folder / "readme.md").read_text()
    assert readme.splitlines()[0] == ("| method | setting | AU count per seed | KL | MI | Δ MI vs `vae` (p) | IW-NLL "
                                      "| rec |")
    p_mi = permutation_test([1.0, 1.75, 1.75], [1.75, 1.75, 2.5]).p  # MI = 1 + 3 AU
    assert f"| `beta-vae` | β=4 | 0 1 1 | 3.77 | 1.50 | -0.50 ({p_mi:.2g}) | 34.47 | 28.53 |" in readme
    assert readme.splitlines()[-1].startswith("Grid `synth`, 1-3 seeds per setting: ") and "†: fewer ok" in readme
    # the same table of every setting: beta-vae's β=0.1 too, which the headline leaves out
    every = (folder / "readme.all.md").read_text()
    assert "| β=0.1 |" in every and "| β=0.1 |" not in readme
    assert [line for line in every.splitlines() if "| β=4 |" in line] == [
        line for line in readme.splitlines() if "| β=4 |" in line]
    assert "PPL" not in (folder / "fashion-mnist.md").read_text()  # text columns only for sentences


def test_headline_is_never_chosen_by_a_metric(tmp_path):
    results = write_results(tmp_path / "results")
    write_plan(results, headline=())
    data = load_grid_records(results / GRID)
    assert [s.method for s in headlines(data)] == ["vae", "lr-vae"]  # methods with one setting; beta-vae has two
    index = Page("index", "report")
    headline_blocks(index, data, Writer(tmp_path / "out"), GRID, *compare_with_vae(data))
    assert "declares none" in index.blocks[-1].text or "declares no headline" in index.blocks[-1].text


def test_missing_section(built):
    readme = (built["out"] / "README.md").read_text()
    missing = readme.split(f"## Grid `{GRID}`", 1)[1].split("### What is missing", 1)[1]
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
    data = load_grid_records(results / GRID)
    missing = "\n".join(missing_section(data))
    assert "no readable `plan.json` beside the records" in missing and "Not run yet" not in missing
    assert f"`{run_id(*FAILED)}`" in missing  # what the records show is still reported
    family = compare_with_vae(data)[1]
    assert not family.from_plan and family.size == 3  # without a plan: the settings found


def test_vae_comparison_is_exact_and_its_family_fixed_by_the_plan(built):
    table = pd.read_csv(built["out"] / GRID / "tables" / "vs_vae.csv")
    row = table[(table["setting"] == "beta=0.1") & (table["metric"] == "au")].iloc[0]
    a, b = [1.0, 0.75, 1.0], [0.25, 0.25, 0.5]
    assert row["p_exact"] == pytest.approx(permutation_test(a, b).p) and row["p_min"] == pytest.approx(0.1)
    assert row["p_mann_whitney"] == pytest.approx(stats.mannwhitneyu(a, b, method="exact").pvalue)
    assert row["cliffs_delta"] == 1.0 and json.loads(row["values"]) == a and json.loads(row["values_vae"]) == b
    # 3 vs 3: p >= 0.1 at any shift, so the CI from inverting the test is unbounded (and says so)
    assert row["ci_low"] == -np.inf and row["ci_high"] == np.inf and "CI unbounded" in row["note"]
    assert not row["in_family"] and pd.isna(row["p_holm"])  # not a headline setting: exploratory
    # the family: beta-vae beta = 4, lr-vae and il-lid-vae (planned, never run: p = 1), all against vae on AU
    family = table[table["in_family"]]
    assert sorted(family["setting"]) == ["alpha_T=1, beta=0.2", "beta=4"]
    p_beta4 = permutation_test([0.0, 0.25, 0.25], b).p
    p_lr = permutation_test([1.0], b).p
    assert family.set_index("setting").loc["beta=4", "p_holm"] == pytest.approx(min(1.0, 3 * min(p_beta4, p_lr))
                                                                                if p_beta4 <= p_lr else
                                                                                max(3 * p_lr, min(1.0, 2 * p_beta4)))
    readme = (built["out"] / "README.md").read_text()
    assert "m = 3 comparisons" in readme and "No comparison of this family can reach α = 0.05" in readme
    nll = table[(table["setting"] == "beta=0.1") & (table["metric"] == "nll")].iloc[0]
    assert nll["n_vae"] == 2  # the old vae record has no IW-NLL
    au_table = (built["out"] / GRID / "tables" / "vs_vae.au.md").read_text()
    assert "*" not in au_table and "[unbounded]" in au_table  # nothing can be significant at 3 vs 3
    # Δ AU in active units of the D latent dims (the CSV keeps the fraction; the p is the same)
    beta4 = table[(table["setting"] == "beta=4") & (table["metric"] == "au")].iloc[0]
    assert f"| {beta4['diff'] * D:+.1f} [unbounded] | {p_text(beta4['p_exact'])} |" in au_table
    assert f"Δ AU in active units (of the {D} latent dims)" in au_table


def test_paper_sections_appear_when_the_records_allow_them(built):
    out = built["out"] / PAPER
    page = (out / "fashion-mnist.md").read_text()
    for title in ("### Architectures", "### Warm-up of α", "### Noise sensitivity"):
        assert title in page, title
    archs = (out / "tables" / "architectures.fashion-mnist.md").read_text()
    assert "arch=mlp-deep" in archs and "arch=mlp-shallow" in archs and "| 0 1 |" in archs  # vae AU count per seed
    warm = (out / "tables" / "warmup.fashion-mnist.md").read_text()
    assert "| constant |" in warm and "| linear |" in warm and "-2.0" in warm  # AU 2/4 vs 4/4: Δ in units
    assert "s²=0.5" in (out / "tables" / "noise_distance.fashion-mnist.md").read_text()
    for kind in ("architectures", "warmup", "noise_grids"):
        assert (out / "figures" / f"{kind}.fashion-mnist.png").stat().st_size > 0, kind
    # one architecture: no architectures section; the synthetic grid has no alpha schedules
    assert "### Architectures" not in (out / "mnist.md").read_text()
    assert "### Warm-up" not in (built["out"] / GRID / "fashion-mnist.md").read_text()
    # many data sets: a summary across them and the ranking figure
    readme = (built["out"] / "README.md").read_text()
    assert "### Across data sets" in readme and (out / "figures" / "ranking.all.png").stat().st_size > 0
    assert (out / "tables" / "summary.tex").stat().st_size > 0


def test_deterministic(built):
    again = built["base"] / "reports-again"  # beside the first: record links are relative to --out
    code, _ = build_report(built["results"], again)
    assert code == 0
    first = {p.relative_to(built["out"]): p.read_bytes() for p in sorted(built["out"].rglob("*")) if p.is_file()}
    second = {p.relative_to(again): p.read_bytes() for p in sorted(again.rglob("*")) if p.is_file()}
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_no_results(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()  # an error, nothing written (tests/system/test_bad_inputs.py has the rest)
    assert "python -m benchmark run" in capsys.readouterr().err


def test_unknown_grid_is_an_error(built, tmp_path, capsys):
    assert main(["report", "--results", str(built["results"]), "--out", str(tmp_path / "out"), "--grid", "nope"]) == 2
    assert f"grids with records: {PAPER}, {GRID}" in capsys.readouterr().err


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


def test_report_never_imports_torch(tmp_path):
    """Every module of the report package, and a whole (small) report through the command line."""
    r = record("vae", (), 0)
    for key in ("vectors", "per_class", "noise", "artifacts", "curves"):
        r.pop(key)
    write_records(tmp_path / "results" / GRID / "runs", [r])
    code = ("import importlib, pkgutil, sys, benchmark.report, benchmark.cli\n"
            "for module in pkgutil.iter_modules(benchmark.report.__path__):\n"
            "    importlib.import_module(f'benchmark.report.{module.name}')\n"
            f"assert benchmark.cli.main(['report', '--results', {str(tmp_path / 'results')!r}, '--out', "
            f"{str(tmp_path / 'out')!r}]) == 0\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


LATEX_WRAPPER = r"""\documentclass[10pt%s]{article}
\usepackage[%s,margin=1in]{geometry}
\usepackage{booktabs,array,longtable,pdflscape,graphicx}
\begin{document}
%s
\end{document}
"""
PAPERS = ("letterpaper", "a4paper")
MAX_OVERFULL_PT = 10.0


def needs(*tools: str):
    """Skip where a tool is missing, except in CI (CI=true), which installs them (.ci/run)."""
    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing) and not os.environ.get("CI"), reason=f"not installed: {missing}")


def latex_problems(tables: list[Path], folder: Path, paper: str, twocolumn: bool = False) -> dict[str, str]:
    """Compile ``tables`` in one document (``paper``, 1 in margins; ``twocolumn``: a two-column
    layout, where ``table*`` spans both columns) with pdflatex: table -> what is wrong with it (an
    error, "Float too large", an overfull box wider or taller than :data:`MAX_OVERFULL_PT`), each
    attributed to its file by a marker in the log."""
    body = "\n".join(rf"\clearpage\typeout{{TABLE {p}}}\input{{{p}}}" for p in tables)
    name = f"{paper}{'-2col' if twocolumn else ''}"
    (folder / f"{name}.tex").write_text(LATEX_WRAPPER % (",twocolumn" if twocolumn else "", paper, body))
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    log = (folder / f"{name}.log").read_text(errors="replace")
    if done.returncode != 0:
        return {"pdflatex": log[-3000:]}
    problems = {}
    for chunk in log.split("TABLE ")[1:]:
        table = chunk.split("\n", 1)[0]
        sizes = [float(w) for w in re.findall(r"Overfull \\[hv]box \(([0-9.]+)pt too (?:wide|high)\)", chunk)]
        if "Float too large" in chunk:
            problems[table] = "Float too large for page"
        elif sizes and max(sizes) > MAX_OVERFULL_PT:
            problems[table] = f"overfull box {max(sizes)}pt"
    return problems


@needs("pdflatex")
@pytest.mark.parametrize("paper", PAPERS)
def test_every_latex_table_compiles_and_fits_the_page(built, tmp_path, paper):
    """All .tex tables in one document (letter or A4, 1 in margins), compiled by pdflatex: no error,
    no float taller than the page, no box more than 10 pt wider or taller than its room; every
    grid's headline is one float (no longtable, no parts) that also fits a two-column page as table*."""
    tables = sorted(built["out"].rglob("*.tex"))
    assert len(tables) >= 10
    assert latex_problems(tables, tmp_path, paper) == {}
    headlines = sorted(built["out"].rglob("headline.tex"))
    for table in headlines:
        tex = table.read_text()
        assert tex.count(r"\begin{table*}") == 1 and "longtable" not in tex and "landscape" not in tex, table
    assert latex_problems(headlines, tmp_path, paper, twocolumn=True) == {}


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}")
    options.binary_location = shutil.which("chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


@needs("chromium", "chromedriver")
def test_html_pages_in_a_real_browser(built):
    """Every page loads without console errors, every image has a non-zero natural size, every
    link resolves (to a file, or an anchor on its page), runs.html links every record (links, not
    Markdown), the first table of every page fits a 1400 px window without sideways scrolling, and a
    click sorts a table."""
    from selenium.webdriver.support.ui import WebDriverWait

    pages = sorted(built["out"].rglob("*.html"))
    assert built["out"] / "index.html" in pages and len(pages) >= 6
    driver = _chromium()
    try:
        driver.set_window_size(1400, 900)
        for page in pages:
            driver.get(page.as_uri())
            driver.execute_script("document.querySelectorAll('img').forEach(i => i.loading = 'eager');")
            WebDriverWait(driver, 20).until(lambda d: d.execute_script(
                "return Array.from(document.images).every(i => i.complete)"))
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], (page, errors)
            sizes = driver.execute_script("return Array.from(document.images).map(i => [i.src, i.naturalWidth])")
            assert [src for src, width in sizes if not width] == [], page
            for href in driver.execute_script("return Array.from(document.links).map(a => a.href)"):
                target = unquote(urlparse(href).path)
                assert href.startswith("file:") and Path(target).is_file(), (page, href)
                anchor = urlparse(href).fragment
                if anchor:
                    assert f'id="{anchor}"' in Path(target).read_text(), (page, href)
            overflow = driver.execute_script(  # the page's first (main) table scrolls sideways by this much
                "const box = document.querySelector('div.wide'); return box ? box.scrollWidth - box.clientWidth : 0;")
            assert overflow <= 0, (page, overflow)
        for grid in (GRID, PAPER):
            driver.get((built["out"] / grid / "runs.html").as_uri())
            records = driver.execute_script("return Array.from(document.querySelectorAll('table a'))"
                                            ".map(a => a.href).filter(h => h.endsWith('.json'))")
            expected = [p.resolve() for p in sorted((built["results"] / grid / "runs").glob("*.json"))
                        if p.name != "broken0000000000.json"]
            assert sorted(Path(unquote(urlparse(h).path)).resolve() for h in records) == expected
            assert "](" not in driver.execute_script("return document.body.innerText")
        driver.get((built["out"] / "index.html").as_uri())
        column = driver.execute_script(
            "const th = Array.from(document.querySelectorAll('table.sortable th'))"
            ".find(t => t.textContent.startsWith('MI'));"
            "const index = Array.from(th.parentNode.children).indexOf(th); th.click();"
            "return Array.from(th.closest('table').tBodies[0].rows).map(r => parseFloat(r.cells[index].dataset.sort));")
        assert column == sorted(column) and len(column) >= 2
    finally:
        driver.quit()


def test_runs_pages_link_every_record(built):
    """Without a browser: runs.html has a link (never raw Markdown) to every record of its grid, and
    every href and src of it (and every link of runs.md) points at an existing file."""
    from html.parser import HTMLParser

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.targets: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.targets += [v for k, v in attrs if k in ("href", "src") and v and not v.startswith(("data:", "#"))]

    for grid in (GRID, PAPER):
        page = built["out"] / grid / "runs.html"
        parser = Links()
        parser.feed(page.read_text())
        assert "](" not in page.read_text()
        for target in parser.targets:
            assert (page.parent / unquote(urlparse(target).path)).is_file(), target
        records = sorted((page.parent / unquote(t)).resolve() for t in parser.targets if t.endswith(".json"))
        expected = [p.resolve() for p in sorted((built["results"] / grid / "runs").glob("*.json"))
                    if p.name != "broken0000000000.json"]
        assert records == expected
        md = (built["out"] / grid / "runs.md").read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", md):
            assert (page.parent / unquote(target)).is_file(), target


def test_the_report_names_the_host_cpu_of_its_records(tmp_path):
    """The same run gives different last digits on another CPU model: a grid says which made its records."""
    from fake_records import record, write_records

    records = [record("vae", (), seed) for seed in range(5)]
    # one model name covers CPUs whose torch kernels differ (AVX2 / AVX512): the line tells them apart
    for r, model, kernels in zip(records, ("AMD EPYC", "AMD EPYC", "AMD EPYC", "Intel Xeon", None),
                                 ("AVX2", "AVX512", "AVX512", None, None)):
        if model is not None:
            r["environment"]["cpu"] = {"model": model, "isa": ["avx2"]}
        r["environment"]["torch_build"] = {"cpu_capability": kernels} if kernels else {}
    write_records(tmp_path / "results" / GRID / "runs", records)
    code, message = build_report(tmp_path / "results", tmp_path / "reports")
    assert code == 0, message
    assert ("host CPUs: AMD EPYC with AVX2 kernels (1 record), AMD EPYC with AVX512 kernels (2 records), Intel Xeon (1 record), "
            "not recorded (1 record)") in (tmp_path / "reports" / "README.md").read_text()
