"""The report's tables (benchmark/report/tables.py) and index without figures: which cell is bold
(only among comparable rows, never on time, never a value at its cap or one a method guarantees by
construction, never where the exact test cannot tell the best from the runner-up), AU as a count of
the latent dims, −ELBO and the IW-NLL's K and examples beside the tables, a grid without a headline,
the key results and contents that open the index, the summary across data sets, every link of every
page, widths of the main tables on a 1400 px page. Records and plans are written by the tests
themselves."""

from __future__ import annotations

import csv
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from benchmark.report import build
from benchmark.report.build import build_report, headline_tables, key_results
from benchmark.report.format import Table, symbol_text
from benchmark.report.load import load_grid_records
from benchmark.report.stats import compare_with_vae
from benchmark.report.tables import settings_table
from benchmark.results.plan import Plan, PlannedRun
from benchmark.results.store import ResultStore
from fake_records import record, run_id, write_records

D = 4  # latent dims of the records of fake_records.record
SEEDS = range(5)
PAGE_PX = 1400  # a browser window; the page's body is at most 84 rem (1344 px) wide
MAIN_TABLE_PX = 84 * 16


def grid_records(grid: str, settings: dict, dataset: str = "fashion-mnist") -> list[dict]:
    """Small ok records (no vectors, curves or images) of ``settings``: (method, hp, arch, epochs) ->
    per-seed metric values {metric: [value per seed]} (AU as a fraction; its count follows)."""
    records = []
    for (method, hp, arch, epochs), metrics in settings.items():
        for seed in SEEDS:
            r = record(method, hp, seed)
            r["run_id"] = run_id(method, hp + (arch, epochs, dataset, grid), seed)
            r["grid"] = grid
            for key in ("vectors", "per_class", "noise", "artifacts", "curves"):
                r.pop(key, None)
            r["config"]["dataset"]["name"] = dataset
            r["config"]["model"]["arch"] = arch
            r["config"]["train"]["epochs"] = epochs
            for key, values in metrics.items():
                r["metrics"][key] = values[seed]
            r["metrics"]["au_count"] = round(r["metrics"]["au"] * D)
            r["estimators"].update(mi_cap=math.log(10000), mi_cap_margin=0.25, mi_mixture_size=10000,
                                   nll_examples=500, neg_elbo="beta = 1, one posterior sample")
            if "wall_time_s" in metrics:
                r["wall_time_s"] = metrics["wall_time_s"][seed]
            records.append(r)
    return records


def write_grid(root: Path, grid: str, records: list[dict], headline: tuple = (), methods: dict | None = None) -> Path:
    write_records(root / grid / "runs", records)
    runs = tuple(PlannedRun.from_dict(dict(r, named=list(r["config"]["hyperparameters"])))
                 for r in records)
    declared = {"sha256": "0" * 64, "first_seen": "2026-01-01T00:00:00+00:00", "results_before": 0,
                "runs": len(runs)} if headline else None
    ResultStore(root, grid).write_plan(Plan(grid, "tables", f"{grid}.toml", runs, headline=headline,
                                            declared=declared, methods=methods or {}))
    return root / grid


def spread(mean: float, step: float = 0.01) -> list[float]:
    """Five seeds around ``mean``."""
    return [mean + step * k for k in (-2, -1, 0, 1, 2)]


def bold_cells(table: Table, header: str) -> dict[str, bool]:
    """(method, setting[, group]) -> whether its cell in column ``header`` is bold."""
    column = next(i for i, h in enumerate(table.header) if h == header or h.startswith(header))
    label = [i for i, h in enumerate(table.header) if h in ("method", "setting", "group")]
    return {" ".join(row[i] for i in label): bold[column] for row, bold in zip(table.rows, table.bold)}


def table_of(tmp_path: Path, settings: dict, methods: dict | None = None) -> Table:
    data = load_grid_records(write_grid(tmp_path / "results", "t", grid_records("t", settings), methods=methods))
    return settings_table(data.settings)


VAE = ("vae", (), "mlp", 3)
BETA = ("beta-vae", (("beta", 0.5),), "mlp", 3)


def test_bold_only_among_comparable_rows(tmp_path):
    """Two architectures with different budgets: each has its own best; the deep one's higher AU
    does not take the bold from the shallow one's best."""
    settings = {("vae", (), "mlp-shallow", 20): {"au": [0.25] * 5},
                ("beta-vae", (("beta", 0.5),), "mlp-shallow", 20): {"au": [0.5] * 5},
                ("vae", (), "mlp-deep", 8): {"au": [0.75] * 5},
                ("beta-vae", (("beta", 0.5),), "mlp-deep", 8): {"au": [1.0] * 5}}
    table = table_of(tmp_path, settings)
    bold = bold_cells(table, "AU")
    assert [k for k, v in bold.items() if v] == ["beta-vae β=0.5 G1", "beta-vae β=0.5 G2"]
    assert "group" in table.header and any("G1 = arch=mlp-deep, epochs=8" in n for n in table.notes)
    assert [row[table.header.index("group")] for row in table.rows] == ["G1", "G1", "G2", "G2"]  # by group
    tex = table.latex("caption", "tab:x")
    assert r"\emph{arch=mlp-deep, epochs=8}" in tex and "G1" not in tex  # LaTeX: a line above each group


def test_time_is_never_bold(tmp_path):
    table = table_of(tmp_path, {VAE: {"au": [0.25] * 5, "wall_time_s": spread(10.0)},
                                BETA: {"au": [0.5] * 5, "wall_time_s": spread(20.0)}})
    assert not any(bold_cells(table, "time").values())
    assert "time (s)" in table.header


def test_a_metric_a_method_guarantees_is_never_bold(tmp_path):
    """bn-vae's AU is high by construction (the plan says so): the best AU is beta-vae's."""
    table = table_of(tmp_path, {VAE: {"au": [0.25] * 5}, BETA: {"au": [0.5] * 5},
                                ("bn-vae", (("gamma", 0.5),), "mlp", 3): {"au": [1.0] * 5},
                                ("free-bits", (("lam", 0.25),), "mlp", 3): {"au": [1.0] * 5, "kl": spread(30.0)}},
                     methods={"bn-vae": {"guarantees": ["au"]}, "free-bits": {"guarantees": ["au", "kl"]}})
    bold = bold_cells(table, "AU")
    assert bold == {"vae —": False, "beta-vae β=0.5": True, "bn-vae γ=0.5": False, "free-bits λ=0.25": False}
    rule = table.notes[0]
    assert rule.startswith("Bold: the best mean of a column") and "(here BN-VAE: AU; free bits: AU, KL)" in rule


def test_the_best_mi_below_its_cap_is_bold(tmp_path):
    """MI at its cap (log 10000 = 9.21, within 0.25) is never bold; InfoVAE's 8.77 below it is."""
    table = table_of(tmp_path, {VAE: {"mi": spread(5.5)}, ("info-vae", (), "mlp", 3): {"mi": spread(8.77)},
                                ("lr-vae", (("alpha_T", 1.0),), "mlp", 3): {"mi": spread(9.15)}})
    bold = bold_cells(table, "MI")
    assert bold == {"vae —": False, "info-vae —": True, "lr-vae α_T=1": False}
    assert table.rows[2][table.header.index("MI ↑")].endswith("(at cap)")


def test_no_bold_where_the_exact_test_cannot_tell_best_from_runner_up(tmp_path):
    """AU 0.55 against 0.50 with overlapping seeds: p > 0.05, nothing bold; clearly apart: bold."""
    close = table_of(tmp_path / "close", {VAE: {"au": [0.25, 0.5, 0.75, 0.5, 0.5]},
                                          BETA: {"au": [0.5, 0.75, 0.5, 0.5, 0.5]}})
    assert not any(bold_cells(close, "AU").values())
    apart = table_of(tmp_path / "apart", {VAE: {"au": [0.25] * 5}, BETA: {"au": [0.5, 0.75, 0.5, 0.5, 0.5]}})
    assert bold_cells(apart, "AU") == {"vae —": False, "beta-vae β=0.5": True}


def test_au_as_a_count_and_elbo_and_the_estimators_beside_the_table(tmp_path):
    table = table_of(tmp_path, {VAE: {"au": [0.25, 0.25, 0.5, 0.25, 0.25]}, BETA: {"au": [1.0] * 5}})
    au = table.header.index("AU ↑")
    assert [row[au] for row in table.rows] == ["1.2/4 ± 0.4", "4/4"]
    assert "−ELBO ↓" in table.header
    legend = next(n for n in table.notes if n.startswith("KL, MI, IW-NLL, −ELBO: nats per image"))
    assert "K = 50 on 500 test examples" in legend and "−ELBO: beta = 1, one posterior sample" in legend
    tex = table.latex("caption", "tab:x")
    assert r"$1.2/4{\scriptstyle\,\pm0.4}$" in tex and "nats" in tex and r"\caption{caption" in tex


def test_a_grid_without_headline_shows_every_setting_first(tmp_path):
    """beta-vae has two settings and the grid declares no headline: both are in the first table."""
    records = grid_records("free", {VAE: {"au": [0.25] * 5}, BETA: {"au": [0.5] * 5},
                                    ("beta-vae", (("beta", 4.0),), "mlp", 3): {"au": [0.0] * 5}})
    data = load_grid_records(write_grid(tmp_path / "results", "free", records))
    assert not data.headline_declared
    page, paper = headline_tables(data, build.first_rows(data), compare_with_vae(data)[0])
    assert [(row[0], row[1]) for row in page.rows] == [("vae", "—"), ("beta-vae", "β=0.5"), ("beta-vae", "β=4")]
    rows = key_results([data]).rows
    assert [row[2:4] for row in rows] == [["VAE", "—"], ["β-VAE", "β=0.5"], ["β-VAE", "β=4"]]


# --- a whole report (figures drawn for two small grids) ---------------------------------------------

TWO = (("lr-vae", (("alpha_T", 1.0), ("beta", 0.2))), ("lr-vae", (("alpha_T", 1.0), ("beta", 1.0))))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Grid `multi`: two data sets, vae and two lr-vae headline settings; grid `free`: no headline."""
    base = tmp_path_factory.mktemp("tables")
    results = base / "results"
    settings = {VAE: {"au": [0.25] * 5}}
    settings.update({(m, hp, "mlp", 3): {"au": [0.5 + 0.25 * i] * 5} for i, (m, hp) in enumerate(TWO)})
    records = grid_records("multi", settings) + grid_records("multi", settings, dataset="mnist")
    write_grid(results, "multi", records, headline=tuple({"method": m, "hyperparameters": dict(hp)} for m, hp in TWO))
    write_grid(results, "free", grid_records("free", {VAE: {"au": [0.25] * 5}, BETA: {"au": [0.5] * 5},
                                                      ("beta-vae", (("beta", 4.0),), "mlp", 3): {"au": [0.0] * 5}}))
    ranked = []

    def ranking(datasets, chosen):
        ranked.append([s.legend for s in chosen])
        return original(datasets, chosen)
    original = build.figure_ranking
    build.figure_ranking = ranking
    try:
        code, message = build_report(results, base / "reports")
    finally:
        build.figure_ranking = original
    assert code == 0, message
    return {"out": base / "reports", "ranked": ranked}


def test_the_index_opens_with_key_results_and_contents(report):
    readme = (report["out"] / "README.md").read_text()
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Key results", "## Contents"] and headings[-1] == "## How to read the tables"
    key = readme.split("## Key results", 1)[1].split("## Contents", 1)[0]
    lines = [line for line in key.splitlines() if line.startswith("| ")]
    assert lines[0] == "| grid | data set | method | setting | AU ↑ | MI ↑ | IW-NLL ↓ | −ELBO ↓ | n |"
    assert len(lines) == 1 + 6 + 3  # multi: 3 headline settings x 2 data sets; free: every setting
    assert "| [multi](#grid-multi) | [mnist](multi/mnist.md) | LR-VAE | α_T=1, β=1 | 3/4 |" in key
    assert "| [free](#grid-free) | [fashion-mnist](free/fashion-mnist.md) | β-VAE | β=4 | 0/4 |" in key
    assert "K = 50 on 500 test examples" in key
    contents = readme.split("## Contents", 1)[1].split("\n## ", 1)[0]
    assert ("- [Grid `multi`](#grid-multi): [fashion-mnist](multi/fashion-mnist.md) · [mnist](multi/mnist.md)"
            in contents)
    html = (report["out"] / "index.html").read_text()
    assert html.index('id="key-results"') < html.index('id="contents"') < html.index('id="grid-free"')
    assert '<a href="#grid-multi">multi</a>' in html and '<a href="multi/mnist.html">mnist</a>' in html


def test_each_data_set_page_starts_with_its_headline_table(report):
    page = (report["out"] / "multi" / "mnist.md").read_text()
    body = page.split("\n", 4)[4]  # after the title and the navigation line
    assert body.startswith("**Headline settings** of grid `multi` on mnist")
    assert body.index("| method | setting |") < body.index("## Figures")
    free = (report["out"] / "free" / "fashion-mnist.md").read_text()
    assert "**Every setting** of grid `free`" in free and "| beta-vae | β=4 |" in free.split("## Figures")[0]


def test_summary_keeps_one_column_per_headline_setting(report):
    """Two lr-vae headline settings: two columns, the same settings as the ranking figure's rows."""
    summary = list(csv.reader((report["out"] / "multi" / "tables" / "summary.csv").read_text().splitlines()))
    assert summary[0] == ["dataset", "AU: vae", "AU: lr-vae (α_T=1, β=0.2)", "AU: lr-vae (α_T=1, β=1)"]
    assert summary[1:] == [["fashion-mnist", "1/4", "2/4", "3/4"], ["mnist", "1/4", "2/4", "3/4"]]
    assert len(report["ranked"]) == 1
    assert {f"AU: {symbol_text(legend)}" for legend in report["ranked"][0]} == set(summary[0][1:])


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if attrs.get(name) and not attrs[name].startswith("data:"):
                self.links.append(attrs[name])


def page_links(page: Path) -> tuple[list[str], set[str]]:
    parser = Links()
    parser.feed(page.read_text())
    return parser.links, parser.ids


def test_every_link_of_every_page_resolves(report):
    """runs.html links every record (never raw Markdown); every href / src of every HTML page and
    every link of every Markdown page points at a file (and an anchor on its page)."""
    out = report["out"]
    runs = (out / "multi" / "runs.html").read_text()
    assert "](" not in runs
    links, _ = page_links(out / "multi" / "runs.html")
    records = [link for link in links if link.endswith(".json")]
    assert len(records) == 15 * 2  # every run of both data sets
    for page in sorted(out.rglob("*.html")):
        links, ids = page_links(page)
        for link in links:
            target = urlparse(link)
            path = (page.parent / unquote(target.path)).resolve() if target.path else page
            assert path.is_file(), (page, link)
            if target.fragment:
                assert target.fragment in (ids if path == page else page_links(path)[1]), (page, link)
    for page in sorted(out.rglob("*.md")):
        for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            target = urlparse(link)
            if target.path:
                assert (page.parent / unquote(target.path)).resolve().is_file(), (page, link)


def test_main_tables_fit_a_1400_px_page(report):
    """The first table of every page (the index's key results, each data set's headline table, every
    run) is no wider than the page's body when every column is as narrow as its content allows."""
    for data in [load_grid_records(p) for p in sorted((report["out"].parent / "results").iterdir())]:
        comparisons = compare_with_vae(data)[0]
        for dataset in data.datasets():
            table = headline_tables(data, [s for s in build.first_rows(data) if s.dataset == dataset], comparisons)[0]
            assert table.html_min_width_px() <= MAIN_TABLE_PX, (data.name, dataset)
        assert build.runs_page(data, "../results").blocks[-1].table.html_min_width_px() <= MAIN_TABLE_PX
    html = (report["out"] / "index.html").read_text()
    assert "max-width: 84rem" in html and MAIN_TABLE_PX + 2 * 16 + 20 <= PAGE_PX


def test_headline_latex_is_one_table_with_one_caption(report):
    tex = (report["out"] / "multi" / "tables" / "headline.tex").read_text()
    assert tex.count(r"\begin{table*}") == 1 and tex.count(r"\caption{") == 1 and "longtable" not in tex
    assert tex.index(r"\caption{") < tex.index(r"\begin{tabular}")  # above the table
    assert "LR-VAE" in tex and "lr-vae" not in tex.split(r"\begin{tabular}")[1]  # display names
    assert "dataset &" not in tex and r"\emph{fashion-mnist}" in tex  # each data set's rows under its name
    assert tex.count("Bold: the best mean") == 1


def test_deterministic(report):
    again = report["out"].parent / "again"  # beside the first: record links are relative to --out
    assert build_report(report["out"].parent / "results", again)[0] == 0
    first = {p.relative_to(report["out"]): p.read_bytes() for p in report["out"].rglob("*") if p.is_file()}
    assert first == {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}


def test_bold_rule_is_stated_once_beside_each_table(report):
    page = (report["out"] / "multi" / "fashion-mnist.md").read_text()
    head = page.split("## Figures", 1)[0]
    assert head.count("Bold: the best mean of a column") == 1


def test_setting_labels_show_every_hyperparameter_with_a_symbol_by_it_and_only_whole_names():
    from benchmark.report.format import symbol_text

    assert symbol_text("beta=0.2, alpha_T=1, gamma=0.5, lam=0.25") == "β=0.2, α_T=1, γ=0.5, λ=0.25"
    assert symbol_text("alpha_schedule=linear, delta=0.1") == "α schedule=linear, δ=0.1"
    assert symbol_text("beta_max=1, mybeta=2, beta") == "beta_max=1, mybeta=2, beta"  # names without a symbol, or no value
