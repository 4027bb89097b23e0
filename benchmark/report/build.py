"""``python -m benchmark report``: paper-style tables, statistics and figures from stored run records.

Reads ``<results>/<grid>/runs/*.json`` (and the PNGs stored beside them) and the grid's
``plan.json``, and nothing else: it never imports torch or training code, never reads grid
files and never retrains. Writes (see docs/report.md)::

    <out>/README.md, <out>/index.html        key results of every grid and contents first; per grid:
                                             headline, its Holm family against `vae`, summary across
                                             data sets, links to the pages below; column meanings
    <out>/<grid>/<dataset>.{md,html}         one page per data set: its headline table first, figures,
                                             sections, all tables
    <out>/<grid>/runs.html                   every run: status, numbers, links to its record and images
    <out>/<grid>/tables/*.{md,tex,csv}       headline, vs_vae (one .tex per metric and data set), vs_lm (text data sets
                                             against `lstm-lm`), per data set, sections, per_seed.csv
                                             (long format), summary
    <out>/<grid>/figures/<kind>.<dataset>.{png,pdf}
    <out>/<grid>/readme.md                   the grid's compact table for the repository's README
    <out>/<grid>/readme.all.md               the same of every setting (where the headline leaves some out)
    <out>/<grid>/MANIFEST                    the files above (stale ones are removed next time)

Output is deterministic: rows are sorted, floats have fixed formats, the bootstrap has a fixed
seed, figures carry no dates or version strings, so running twice on the same records gives
byte-identical files.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence
from pathlib import Path

from .figures import Figure, figure_style
from .figures_curves import figure_curves
from .figures_latents import figure_images, figure_kl_heatmap, figure_noise, figure_per_class, figure_spectra
from .figures_sweeps import figure_au_vs_beta, figure_ranking, figure_rate_distortion, figure_sweep
from .format import Table, display_name, hp_symbol, slug, symbol_text
from .html import html
from .load import (BASELINE, LANGUAGE_MODEL, GridData, Run, Setting, find_grids, load_grid_records, method_order,
                   order, relabel)
from .missing import missing_section
from .pages import Page, code_tags, markdown
from .readme import readme_table
from .sections import Section, architectures, noise, warmup
from .stats import (LM_COMPARED, PRIMARY, Comparison, Family, compare_with_lm, compare_with_vae, compared,
                    declaration_text, family_text)
from .tables import (AT_CAP, COLUMN, COLUMNS, INVALID, INVALID_NOTE, SHORT_NOTE, TEXT_COLUMN, all_text, cell_text,
                     column_of, comparison_csv, comparison_table, headlines, invalid_notes, label_text, per_seed_csv,
                     per_seed_keys, settings_csv, settings_table, stat_cells, stats_legend, telling_columns, text_notes)

MANY_DATASETS = 4  # from this many data sets on, the index shows summaries and links, no figures
SAMPLE_LINES = 3  # reconstructions and prior samples shown per setting on a text data set's page
SAMPLE_WORDS = 25  # each sentence of them cut after this many words


class Writer:
    """Collects the files of one report and writes them, removing stale files listed in an old MANIFEST."""

    def __init__(self, out: Path):
        self.out = out
        self.files: dict[str, bytes] = {}

    def add(self, rel: str, content: str | bytes) -> str:
        self.files[rel] = content.encode() if isinstance(content, str) else content
        return rel

    def write(self, manifests: dict[str, list[str]]) -> None:
        for rel, content in sorted(self.files.items()):
            path = self.out / rel
            if path.is_file() and path.read_bytes() == content:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        for folder, listed in manifests.items():
            for rel in listed:
                if rel in self.files or ".." in Path(rel).parts or Path(rel).is_absolute():
                    continue
                path = self.out / rel
                path.unlink(missing_ok=True)
                for parent in path.parents:  # drop folders this left empty, up to <out>/<grid>
                    if parent == self.out / folder or not parent.is_dir() or any(parent.iterdir()):
                        break
                    parent.rmdir()
            top = self.out / folder
            if top.is_dir() and not any(top.iterdir()):
                top.rmdir()


def _old_manifest(out: Path, folder: str) -> list[str]:
    path = out / folder / "MANIFEST"
    try:
        return [f"{folder}/{line}" for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def _processor(environment: dict) -> str:
    """A record's host CPU as the provenance line names it: its model and the vector kernels torch
    chose on it (``AMD EPYC with AVX512 kernels``): one model name covers CPUs of different generations, and
    torch's kernels (AVX2 or AVX512) can change the last digits of a run's numbers."""
    model = (environment.get("cpu") or {}).get("model") or "not recorded"
    kernels = (environment.get("torch_build") or {}).get("cpu_capability")
    return f"{model} with {kernels} kernels" if kernels and model != "not recorded" else model


def _provenance(data: GridData) -> list[str]:
    statuses: dict[str, int] = {}
    for r in data.runs:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    counts = ", ".join(f"{v} {k}" for k, v in sorted(statuses.items(), key=lambda kv: (kv[0] != "ok", kv[0])))
    commits = sorted({(((r.record.environment or {}).get("git") or {}).get("commit") or "unknown")[:12]
                      + (" (dirty)" if (((r.record.environment or {}).get("git") or {}).get("dirty")) else "")
                      for r in data.runs})
    devices = sorted({str(r.record.device) for r in data.runs if r.record.device})
    processors: dict[str, int] = {}  # the host CPU of each record: the same run's numbers can differ between CPU models
    for r in data.runs:
        processor = _processor(r.record.environment or {})
        processors[processor] = processors.get(processor, 0) + 1
    hosts = ", ".join(f"{model} ({n} record{'s' if n != 1 else ''})" for model, n in sorted(processors.items()))
    seeds = sorted({r.seed for r in data.runs}, key=order)
    methods = sorted({r.method for r in data.runs}, key=method_order)
    unreadable = f", {len(data.unreadable)} unreadable" if data.unreadable else ""
    planned = f" of {len(data.plan.runs)} planned" if data.plan else ""
    return [f"records: {len(data.runs)}{planned} ({counts}){unreadable}",
            f"data sets: {', '.join(data.datasets()) or '—'}; methods: {', '.join(methods) or '—'}; "
            f"seeds: {', '.join(map(str, seeds)) or '—'}",
            f"code: {', '.join(f'`{c}`' for c in commits) or 'unknown'}; devices: {', '.join(devices) or 'unknown'}; "
            f"host CPUs: {hosts or '—'}"]


def _tables(writer: Writer, folder: str, stem: str, table: Table, caption: str, csv: str | None = None,
            latex: Table | None = None) -> list[tuple[str, str]]:
    """Write a table as Markdown, LaTeX (``latex`` where the paper's table differs, e.g. without
    per-seed columns) and CSV; the (label, path) links to them."""
    links = [("Markdown", writer.add(f"{folder}/tables/{stem}.md", table.markdown(notes=True))),
             ("LaTeX", writer.add(f"{folder}/tables/{stem}.tex",
                                  (latex or table).latex(caption, f"tab:{folder}-{stem}")))]
    if csv is not None:
        links.append(("CSV", writer.add(f"{folder}/tables/{stem}.csv", csv)))
    return links


def _figure(page: Page, writer: Writer, folder: str, figure: Figure, skipped: list[str]) -> None:
    if figure.png is None:
        skipped.append(f"{figure.kind} ({figure.dataset}): {figure.skipped}.")
        return
    png = writer.add(f"{folder}/figures/{figure.stem}.png", figure.png)
    pdf = writer.add(f"{folder}/figures/{figure.stem}.pdf", figure.pdf or b"")
    number = sum(1 for b in page.blocks if b.kind == "figure") + 1
    page.add("figure", text=figure.caption, path=png, number=number, links=[("PDF", pdf), ("PNG", png)],
             anchor=figure.kind)


def headline_text(family: Family, settings: Sequence[Setting] = ()) -> str:
    """What the headline table (of ``settings``) shows: how its settings were named and when (as the
    plan records it)."""
    return (f"Headline settings: named in the grid file (`headline = {{...}}`, written into `plan.json`); "
            f"{declaration_text(family)}; the report never picks a setting by a metric; a method the grid does not "
            "name is shown where it has a single setting. p Holm: AU against `vae` in the "
            + ("confirmatory family (below)." if family.confirmatory else "Holm family (below; not confirmatory)."))


def first_rows(data: GridData) -> list[Setting]:
    """The rows of a grid's first table: its headline settings, or every setting when the grid
    declares no headline (methods with several settings included)."""
    return headlines(data) if data.headline_declared else list(data.settings)


def headline_tables(data: GridData, settings: Sequence[Setting], comparisons: Sequence[Comparison]
                    ) -> tuple[Table, Table]:
    """The headline table of ``settings`` (mean ± std, per-seed AU, p Holm; no wall time) for the
    pages, and the same for LaTeX without per-seed columns, rec (−ELBO and KL are there) and the runs
    that are not ok (n and † say how many seeds are missing): one table that fits a page."""
    by_key = {c.setting.key: c for c in comparisons}
    holm = [("baseline" if s.method == BASELINE else
             stat_cells(by_key[s.key].results.get("au"), "au")[3] if s.key in by_key and
             by_key[s.key].results.get("au") else "no baseline") for s in settings]
    several = len({s.dataset for s in settings}) > 1
    extra = {"p Holm (AU vs vae)": holm}
    page = settings_table(settings, with_dataset=several, extra=extra, per_seed=per_seed_keys(settings),
                          drop=("wall_time_s",))
    paper = settings_table(settings, with_dataset=several, extra={"p Holm": holm}, drop=("wall_time_s", "rec"),
                           not_ok=False)
    return page, paper


def headline_blocks(page: Page, data: GridData, writer: Writer, folder: str,
                    comparisons: Sequence[Comparison], family: Family) -> None:
    chosen = first_rows(data)
    page.heading("Headline settings" if data.headline_declared else "Every setting", 3)
    if not chosen:
        page.text("No settings with records.")
        return
    table, paper = headline_tables(data, chosen, comparisons)
    seeds = " and ".join(COLUMN[k].name for k in per_seed_keys(chosen))
    where = f" on {chosen[0].dataset}" if len({s.dataset for s in chosen}) == 1 else ""
    what = "Headline settings" if data.headline_declared else "Every setting"
    links = _tables(writer, folder, "headline", table, f"{what} of grid {data.name}{where} "
                    f"({declaration_text(family)}): mean ± std over seeds, n ok seeds; p Holm: AU against {BASELINE}"
                    + (" (confirmatory family)." if family.confirmatory else " (Holm family, not confirmatory)."),
                    settings_csv(chosen, comparisons), latex=paper)
    text = headline_text(family, chosen) if data.headline_declared else (
        "The grid declares no headline, so every setting is shown (methods with several settings included); declare "
        'one in the grid file, e.g. `headline = {"lr-vae" = {alpha_T = 1.0, beta = 0.2}}`, and rerun `python -m '
        "benchmark run` with the grid (it rewrites `plan.json` in seconds when every run is done). p Holm: AU against "
        "`vae` in the Holm family (below; not confirmatory).")
    page.add("table", table=table, links=links, text=text + f" Per seed: {seeds}.")


def _comparison_blocks(page: Page, data: GridData, writer: Writer, folder: str, comparisons: Sequence[Comparison],
                       family: Family, metrics: Sequence[str], family_only: bool, dataset: str | None = None) -> None:
    """Every comparison with `vae` on each metric (``family_only``: the family's members on its primary
    metric, the index's table ``vs_vae.<metric>``; a data set's page: ``vs_vae.<metric>.<dataset>``)."""
    page.heading(f"Against the plain VAE (`{BASELINE}`)", 3)
    if not comparisons:
        page.text(f"Nothing to compare: no ok runs of methods other than `{BASELINE}`.")
        return
    page.text(family_text(family), stats_legend(family))
    text = all_text([c.setting for c in comparisons])
    for key in metrics:
        shown = [c for c in comparisons if c.in_family] if family_only and key in PRIMARY else list(comparisons)
        if not shown:
            continue
        table = comparison_table(shown, key)
        name = "confirmatory family" if family.confirmatory else "Holm family, not confirmatory"
        role = name if family_only and key in PRIMARY else (
            f"primary; Holm over the {name}" if key in PRIMARY else "exploratory")
        column = column_of(key, text)
        stem = f"vs_vae.{key}" + (f".{slug(dataset)}" if dataset else "")
        links = _tables(writer, folder, stem, table, f"{column.name} against {BASELINE} (grid "
                        f"{data.name}, {role}): difference in means with its 95% CI from inverting the exact "
                        "permutation test (shift model; it excludes 0 exactly when p ≤ 0.05), exact permutation p, "
                        "the smallest attainable p, Holm-adjusted p and Cliff's delta.")
        page.add("table", table=table, links=links + [("CSV (all metrics)", f"{folder}/tables/vs_vae.csv")],
                 text=f"**{column.name}** ({role})")


def _lm_blocks(page: Page, writer: Writer, folder: str, dataset: str, comparisons: Sequence[Comparison]) -> None:
    """Every text setting of ``dataset`` against the language model on NLL and PPL (exploratory)."""
    page.heading(f"Against the LSTM language model (`{LANGUAGE_MODEL}`)", 3)
    page.text(f"The language model `{LANGUAGE_MODEL}` is the decoder without z (KL = MI = AU = 0 exactly; its IW-NLL "
              "is its exact NLL): the reference every text VAE is compared against. A VAE gains from z only if its "
              "NLL is below the LM's (Δ < 0). A VAE's IW-NLL is an upper bound on its NLL (K importance samples), so "
              "part of a Δ above 0 can be the bound's gap. Exploratory: raw exact p, no Holm family.",
              stats_legend(None, LANGUAGE_MODEL))
    for key in LM_COMPARED:
        column = column_of(key, True)
        table = comparison_table(comparisons, key, LANGUAGE_MODEL, holm=False)
        links = _tables(writer, folder, f"vs_lm.{key}.{slug(dataset)}", table, f"{column.name} against "
                        f"{LANGUAGE_MODEL} on {dataset} (exploratory): difference in means with its 95% CI from "
                        "inverting the exact permutation test (shift model; it excludes 0 exactly when p ≤ 0.05), "
                        "exact permutation p, the smallest attainable p and Cliff's delta.")
        page.add("table", table=table, links=links + [("CSV (both metrics)", f"{folder}/tables/vs_lm.csv")],
                 text=f"**{column.name}** (exploratory)")


def _cut(sentence: str) -> str:
    """A sentence cut after :data:`SAMPLE_WORDS` words (… where cut)."""
    words = sentence.split()
    return " ".join(words[:SAMPLE_WORDS]) + (" …" if len(words) > SAMPLE_WORDS else "")


def _samples_blocks(page: Page, settings: Sequence[Setting]) -> None:
    """The greedy decodings each setting's first ok seed recorded (``texts``), in report order."""
    shown = [(s, s.ok[0]) for s in settings if s.ok and s.ok[0].record.texts]
    if not shown:
        return
    page.heading("Samples", 3)
    page.text(f"Greedy decodings recorded by each setting's first ok seed (`texts` of its record): the first "
              f"{SAMPLE_LINES} test sentences and their decodings from the posterior mean (input => decoding), "
              f"then {SAMPLE_LINES} decodings of prior draws z ~ N(0, I); each sentence cut after {SAMPLE_WORDS} "
              "words (…); the record holds them all.")
    for s, run in shown:
        texts = run.record.texts or {}
        label = "" if s.label == "—" else f" ({symbol_text(s.label)})"
        page.text(f"**{s.method}**{label}, seed {run.seed}:")
        page.add("quotes", items=[f"reconstruction: {' => '.join(_cut(part) for part in text.split(' => '))}"
                                  for text in (texts.get("reconstructions") or [])[:SAMPLE_LINES]]
                 + [f"sample: {_cut(text)}" for text in (texts.get("samples") or [])[:SAMPLE_LINES]])


def _text_legend(settings: Sequence[Setting]) -> str:
    """What a text data set's numbers are, and the steps its records mark not applicable (with why)."""
    reasons = sorted({(step, why) for s in settings for r in s.ok
                      for step, why in ((r.record.estimators or {}).get("not_applicable") or {}).items()})
    rec = TEXT_COLUMN["rec"]
    return code_tags("Sentences: " + "; ".join(text_notes(settings)) + f"; {rec.name}: {rec.meaning}. "
                     + ("Not applicable to these records (`estimators.not_applicable`), so no table or figure shows "
                        "them: " + "; ".join(f"{step} — {why}" for step, why in reasons) + "." if reasons else ""))


def _full_table(page: Page, writer: Writer, folder: str, data: GridData, dataset: str) -> None:
    settings = data.settings_of(dataset)
    per_seed = per_seed_keys(settings)
    table = settings_table(settings, per_seed=per_seed)
    stem = slug(dataset)
    links = _tables(writer, folder, stem, table, f"{dataset} (grid {data.name}): every method and setting, mean ± std "
                    f"over seeds, n ok seeds.", settings_csv(settings),
                    latex=settings_table(settings))
    page.heading("Every setting", 3)
    page.add("table", table=table, links=links, folded=True, text=f"{dataset}: {len(settings)} settings, with wall "
             f"times and per-seed {' and '.join(COLUMN[k].name for k in per_seed)}")


def _section_blocks(page: Page, writer: Writer, folder: str, dataset: str, section: Section,
                    skipped: list[str]) -> None:
    page.heading(section.title, 3)
    page.text(section.intro)
    for name, table in section.tables.items():
        stem = f"{name}.{slug(dataset)}"
        title = section.titles.get(name, "")
        links = _tables(writer, folder, stem, table, f"{section.title} on {dataset}"
                        + (f": {title.replace('**', '')}" if title else "") + ".",
                        table.csv())
        page.add("table", table=table, links=links, text=title)
    for figure in section.figures:
        _figure(page, writer, folder, figure, skipped)


def dataset_page(data: GridData, dataset: str, writer: Writer, comparisons: Sequence[Comparison], family: Family,
                 runs_link: str, lm: Sequence[Comparison] = ()) -> Page:
    """Everything about one data set of a grid (``lm``: the grid's comparisons with the language model),
    its headline table first."""
    folder = slug(data.name)
    settings = data.settings_of(dataset)
    chosen = [s for s in headlines(data) if s.dataset == dataset]
    page = Page(f"{folder}/{slug(dataset)}", f"{data.name} · {dataset}",
                nav=[("← report", "README"), (f"every run of {data.name}", f"{folder}/runs")])
    first = [s for s in first_rows(data) if s.dataset == dataset]
    if first:
        table = headline_tables(data, first, comparisons)[0]
        page.add("table", table=table, text=(f"**{'Headline settings' if data.headline_declared else 'Every setting'}"
                                             f"** of grid `{data.name}` on {dataset} ({declaration_text(family)}): "
                                             "mean ± std over seeds; p Holm: AU against `vae` (family below)."),
                 links=[("Markdown", f"{folder}/tables/headline.md"), ("LaTeX", f"{folder}/tables/headline.tex"),
                        ("CSV", f"{folder}/tables/headline.csv")])
    page.text(f"Grid `{data.name}`, data set {dataset}: {len(settings)} settings, "
              f"{sum(len(s.ok) for s in settings)} ok runs. Every run and its record: [runs]({runs_link}).")
    text = all_text(settings)
    if text:
        page.text(_text_legend(settings))
    skipped: list[str] = []
    page.heading("Figures", 2)
    short = relabel(settings)  # figure legends without the settings every drawn setting shares
    settings, chosen = [short[s.key] for s in settings], [short[s.key] for s in chosen]
    with figure_style(s.method for s in data.settings):  # plugins styled alike on every page
        figures = [figure_au_vs_beta(dataset, settings), figure_sweep(dataset, settings),
                   figure_rate_distortion(dataset, settings), figure_curves(dataset, settings),
                   figure_per_class(dataset, chosen), figure_spectra(dataset, chosen),
                   figure_kl_heatmap(dataset, settings), figure_noise(dataset, chosen)]
        figures += [figure_images(name, dataset, chosen, data.runs_dir)
                    for name in ("reconstructions", "samples", "traversals", "interpolations")]
        for figure in figures:
            _figure(page, writer, folder, figure, skipped)
        sections = [architectures(dataset, settings, chosen), warmup(dataset, settings),
                    noise(dataset, chosen, data.runs_dir)]
        found = [s for s in sections if s is not None]
        if found:
            page.heading("Sections", 2)
        for section in found:
            _section_blocks(page, writer, folder, dataset, section, skipped)
    mine = [c for c in comparisons if c.setting.dataset == dataset]
    metrics = list(dict.fromkeys(key for s in settings for key in compared(s)))
    _comparison_blocks(page, data, writer, folder, mine, family, metrics, family_only=False, dataset=dataset)
    against_lm = [c for c in lm if c.setting.dataset == dataset]
    if against_lm:
        _lm_blocks(page, writer, folder, dataset, against_lm)
    if text:
        _samples_blocks(page, settings)
    _full_table(page, writer, folder, data, dataset)
    if skipped:
        page.heading("Not drawn", 3)
        page.add("list", items=skipped)
    return page


def runs_page(data: GridData, records_link: str) -> Page:
    """Every run of the grid: status, numbers and links to its record and stored images
    (``records_link``: the records' folder, relative to the report folder)."""
    folder = slug(data.name)
    page = Page(f"{folder}/runs", f"{data.name} · every run", nav=[("← report", "README")])
    page.text(f"Every record of grid `{data.name}` (links: the record files under `--results`).")
    header = ["run", "dataset", "method", "setting", "seed", "status", "AU", "KL", "IW-NLL", "images"]
    rows = []
    for s in data.settings:
        for run in sorted(s.runs, key=lambda r: (order(r.seed), r.run_id)):
            images = " ".join(f"[{name}]({records_link}/{file})" for name, file in sorted((run.record.artifacts
                                                                                           or {}).items()))
            rows.append([f"[{run.run_id}]({records_link}/{run.run_id}.json)", s.dataset, s.method, label_text(s),
                         str(run.seed), run.status, _run_au(run, s), *(_run_cell(run, k) for k in ("kl", "nll")),
                         images or "—"])
    flagged = any(r.invalid(k) for s in data.settings for r in s.ok for k in ("au", "kl", "nll"))
    table = Table.plain(header, rows, "llllrlrrrl", [INVALID_NOTE] if flagged else [],
                        markup=[True] + [False] * 8 + [True])
    page.add("table", table=table)
    return page


def _run_au(run: Run, setting: Setting) -> str:
    """One run's AU as a count of the latent dims (``20/32``) where it records one, else its fraction."""
    d = setting.config.latent_dim
    count = run.metric("au_count")
    if run.status == "ok" and run.metric("au") is not None and count is not None:
        return f"{int(round(count))}/{d}"
    return _run_cell(run, "au")


def _run_cell(run: Run, key: str) -> str:
    """One run's metric at the column's decimals, ``invalid`` where its estimator's check rejects it."""
    if run.invalid(key):
        return INVALID
    value = run.metric(key)
    return "—" if value is None else f"{value:.{COLUMN[key].decimals}f}"


def _summary_blocks(page: Page, data: GridData, writer: Writer, folder: str) -> None:
    """Across data sets: the headline AU per data set (rows) and headline setting (columns: one per
    setting, as the ranking figure's rows), and the ranking figure."""
    chosen = headlines(data)
    datasets = data.datasets()
    if len(datasets) < 2 or not chosen:
        return
    page.heading("Across data sets", 3)
    columns = sorted(dict.fromkeys(s.legend for s in chosen), key=lambda c: (
        method_order(next(s.method for s in chosen if s.legend == c)), c))
    rows = []
    for dataset in datasets:
        cells = {s.legend: s for s in chosen if s.dataset == dataset}
        rows.append([dataset] + [cell_text(cells[c], "au", spread=False)[0] if c in cells and cells[c].ok
                                 else "—" for c in columns])
    table = Table.plain(["dataset"] + [f"AU: {symbol_text(c)}" for c in columns], rows, "l" + "r" * len(columns),
                        invalid_notes(chosen, ["au"]))
    what = ("Mean active units (a count of the latent dims, `mean/d`; the fraction where the records hold no count) "
            "of each headline setting per data set")
    links = _tables(writer, folder, "summary", table, f"{what} (grid {data.name}).", table.csv())
    page.add("table", table=table, links=links, text=f"{what}, one column per setting (the ranking figure's rows).")
    with figure_style(s.method for s in data.settings):
        _figure(page, writer, folder, figure_ranking(datasets, chosen), [])


def report_grid(data: GridData, writer: Writer, index: Page, results_link: str) -> list[Page]:
    """Write one grid's tables and figures, add its summary to ``index``; its other pages."""
    folder = slug(data.name)
    comparisons, family = compare_with_vae(data)
    lm = compare_with_lm(data)
    runs_link = f"{folder}/runs.md"
    index.heading(f"Grid `{data.name}`", 2)
    index.text(_pages_line(data))
    headline_blocks(index, data, writer, folder, comparisons, family)
    if data.description:
        index.text(f"*{data.description}*")
    index.add("list", items=_provenance(data))
    _comparison_blocks(index, data, writer, folder, comparisons, family, PRIMARY, family_only=True)
    writer.add(f"{folder}/tables/vs_vae.csv", comparison_csv(comparisons))
    writer.add(f"{folder}/tables/per_seed.csv", per_seed_csv(data.settings))
    if lm:
        writer.add(f"{folder}/tables/vs_lm.csv", comparison_csv(lm, LM_COMPARED, "lm"))
    writer.add(f"{folder}/readme.md", readme_table(data, comparisons, lm))
    if len(first_rows(data)) < len(data.settings):
        writer.add(f"{folder}/readme.all.md", readme_table(data, comparisons, lm, every=True))
    _summary_blocks(index, data, writer, folder)
    pages = [dataset_page(data, dataset, writer, comparisons, family, runs_link, lm) for dataset in data.datasets()]
    if len(data.datasets()) < MANY_DATASETS:
        for page in pages:
            first = next((b for b in page.blocks if b.kind == "figure"), None)
            if first is not None:
                index.add("figure", text=first.text + f" More on [its page]({page.stem}.md).", path=first.path,
                          number=sum(1 for b in index.blocks if b.kind == "figure") + 1, links=first.links,
                          anchor=first.anchor)
    index.heading("What is missing", 3)
    index.add("list", items=missing_section(data))
    pages.append(runs_page(data, f"{results_link}/{folder}/runs" if results_link else "runs"))
    return pages


def _pages_line(data: GridData) -> str:
    """Links to a grid's pages: each data set's (figures, sections, every comparison and setting), every run."""
    folder = slug(data.name)
    links = [f"[{dataset}]({folder}/{slug(dataset)}.md)" for dataset in data.datasets()]
    return ("Pages: " + " · ".join(links) + f" · [every run]({folder}/runs.md) · [per-seed values (CSV)]"
            f"({folder}/tables/per_seed.csv)")


def key_results(grids: Sequence[GridData]) -> Table:
    """One row per headline setting of every grid (every setting of a grid without a headline): the
    grid (a link to its section), the data set (a link to its page), method, setting and the means of
    AU (a count of the latent dims), MI, IW-NLL and −ELBO (PPL where a grid is on sentences), n."""
    text = any(s.text for data in grids for s in data.settings)
    keys = ["au", "mi", "nll", "neg_elbo"] + (["ppl"] if text else [])
    header = ["grid", "data set", "method", "setting"] + [COLUMN[k].header for k in keys] + ["n"]
    rows = []
    for data in grids:
        folder = slug(data.name)
        shown = first_rows(data)
        telling = telling_columns(shown)
        for s in shown:
            cells = [cell_text(s, k, spread=False)[0] if k != "ppl" or s.text else "—" for k in keys]
            rows.append([f"[{data.name}](#{_anchor(f'Grid `{data.name}`')})",
                         f"[{s.dataset}]({folder}/{slug(s.dataset)}.md)", display_name(s.method),
                         _short_label(s, telling[s.dataset])] + cells + [s.n_text])
    return Table.plain(header, rows, "llpp" + "r" * (len(keys) + 1), [], markup=[True, True])


def _short_label(s: Setting, telling: Sequence[str]) -> str:
    """A setting as the key results name it: its hyperparameters by symbol, then the settings that
    tell it from other rows of its data set (``telling``: architecture, epochs), † when short."""
    parts = [hp_symbol(text) for c, text in s.parts if c.startswith("hp.")]
    parts += [text for c, text in s.parts if c in telling]
    return (", ".join(parts) or "—") + (" †" if s.short else "")


def _anchor(heading: str) -> str:
    """The anchor of a heading (as :meth:`Page.heading` and the code host make it)."""
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def key_notes(grids: Sequence[GridData]) -> list[str]:
    """What the key results' numbers are: units, the IW-NLL's K and examples per grid, marks."""
    estimates = []
    for data in grids:
        runs = [r for s in first_rows(data) for r in s.ok if r.recorded("nll")]
        used = sorted({(int((r.record.estimators or {}).get("nll_samples") or 0),
                        int((r.record.estimators or {}).get("nll_examples") or 0), r.text) for r in runs})
        if used:
            estimates.append(f"{data.name} " + " or ".join(
                f"K = {k}" + (f" on {n} test {'sentences' if text else 'examples'}" if n else "")
                for k, n, text in used))
    shown = [s for data in grids for s in first_rows(data)]
    notes = ["Means over the ok seeds of each grid's headline settings (every setting where a grid declares no "
             "headline); rows of different grids are not comparable, so nothing is bold here: each grid's section "
             "has the spread, the tests against `vae` and the best values among comparable rows",
             "AU: active units as a count of the d latent dims (the mean over seeds); MI, IW-NLL and −ELBO in nats "
             "per image" + ("; on sentences per sentence, where IW-NLL is the NLL and PPL its perplexity"
                        if any(s.text for s in shown) else "")
             + (f"; IW-NLL with K importance samples per example: {'; '.join(estimates)}" if estimates else "")]
    if any(s.mi_at_cap() for s in shown):
        notes.append(f"{AT_CAP.strip()}: an MI within the margin of its cap log N, where every code identifies its "
                     "example (not more information)")
    if any(s.short for s in shown):
        notes.append(SHORT_NOTE)
    notes += invalid_notes(shown, ["au", "mi", "nll", "neg_elbo", "ppl"])
    return notes


def _write_page(writer: Writer, page: Page) -> None:
    writer.add(f"{page.stem}.md", markdown(page, page.stem))
    writer.add(f"{page.stem}.html", html(page, page.stem))


def build_report(results: Path, out: Path, grid: str | None = None, page: str = "README.md") -> tuple[int, str]:
    """Write the report: ``out/page`` (Markdown) and its HTML twin (``index.html`` for README.md,
    else ``<page stem>.html``) and a folder per grid; returns (exit code, message for stderr).

    Errors (2, nothing written): no records under ``results`` (for ``grid``), or, without
    ``grid``, ``out`` holding reports of grids that ``results`` has no folder of (another results
    folder's report: never overwritten). A grid whose records were deleted (its folder under
    ``results`` is there, empty) loses its old report files."""
    grid_dirs = find_grids(results, grid)
    if not grid_dirs:
        available = [p.name for p in find_grids(results, None)]
        if grid is not None and available:
            return 2, (f"error: no records for grid {grid!r} under {results}/ "
                       f"(grids with records: {', '.join(available)})")
        hint = (f"; {results}/runs exists: pass the folder above a grid, e.g. --results {results.parent}"
                if (results / "runs").is_dir() else "")
        where = "does not exist" if not results.exists() else f"holds no run records (<grid>/runs/*.json){hint}"
        return 2, (f"error: {results}/ {where}; run `python -m benchmark run` first or pass --results DIR; "
                   "nothing written")
    old_reports = sorted(p.name for p in out.iterdir() if (p / "MANIFEST").is_file()) if out.is_dir() else []
    foreign = [name for name in old_reports if not (results / name).is_dir()]
    if grid is None and foreign:
        return 2, (f"error: {out}/ holds the report of grid(s) {', '.join(foreign)}, which {results}/ has no results "
                   f"of: pass --out DIR to write this report elsewhere (or delete {out}/{foreign[0]}/ if that grid "
                   "is gone); nothing written")
    writer = Writer(out)
    manifests: dict[str, list[str]] = {}
    if grid is None:  # grids whose records are gone (their results folder is empty): their old files go
        for old in old_reports:
            manifests[old] = _old_manifest(out, old)
    results_link = posixpath.join(*Path(os.path.relpath(results.resolve(), out.resolve())).parts)
    grids = [load_grid_records(grid_dir) for grid_dir in grid_dirs]
    index = Page("index", "Benchmark report")
    index.text(f"Generated by `python -m benchmark report` from the run records in `{str(results).rstrip('/')}/` "
               "(nothing retrained); do not edit by hand — rerun the command.")
    index.heading("Key results", 2)
    table = key_results(grids)
    table.notes = key_notes(grids)
    index.add("table", table=table)
    index.heading("Contents", 2)
    index.add("list", items=["[Key results](#key-results)"] + [
        f"[Grid `{data.name}`](#{_anchor(f'Grid `{data.name}`')}): " + _pages_line(data)[len("Pages: "):]
        for data in grids] + ["[How to read the tables](#how-to-read-the-tables)"])
    summaries = []
    for data in grids:
        folder = slug(data.name)
        before = set(writer.files)
        for grid_page in report_grid(data, writer, index, results_link):
            _write_page(writer, grid_page)
        mine = sorted(rel for rel in writer.files if rel not in before)
        writer.add(f"{folder}/MANIFEST", "".join(rel[len(folder) + 1:] + "\n" for rel in mine + [f"{folder}/MANIFEST"]))
        manifests[folder] = _old_manifest(out, folder)
        summaries.append(f"{data.name}: {len(data.runs)} records")
    index.heading("How to read the tables", 2)
    index.text("Metrics: mean ± standard deviation over the seeds of the ok runs, n = number of ok seeds (\"k of P\" "
               "and † when fewer than the P planned); a value its estimator's own check rejects is invalid: left out "
               "of means, tests and rankings and counted (\"1 of 5 invalid\"). ↑ / ↓: higher / lower is better; "
               "**bold**: the best of comparable rows, by the rule under each table. Column meanings:")
    items = [f"**{c.name}**: {c.meaning}." for c in COLUMNS]
    if any(s.text for data in grids for s in data.settings):
        items += [f"**{c.name}** (sentences): {code_tags(c.meaning)}." for c in TEXT_COLUMN.values()]
    index.add("list", items=items)
    html_page = "index.html" if page == "README.md" else f"{Path(page).stem}.html"
    writer.add(page, markdown(index, Path(page).stem))
    writer.add(html_page, html(index, Path(html_page).stem))
    writer.write(manifests)
    return 0, f"report of {'; '.join(summaries)} -> {out}/{page}, {out}/{html_page} ({len(writer.files)} files)"
