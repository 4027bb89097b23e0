"""``python -m benchmark report``: paper-style tables, statistics and figures from stored run records.

Reads ``<results>/<grid>/runs/*.json`` (and the PNGs stored beside them) and the grid's
``plan.json``, and nothing else: it never imports torch or training code, never reads grid
files and never retrains. Writes (see docs/report.md)::

    <out>/README.md                          one page: per grid the headline table, the comparison
                                             with the plain VAE, every figure, what is missing
    <out>/<grid>/tables/<dataset>.{md,tex,csv}   every method x setting: mean ± std over seeds, n
    <out>/<grid>/tables/headline.{md,tex,csv}    best setting per method per data set
    <out>/<grid>/tables/vs_vae.{md,tex,csv}      Welch's t-test and Cohen's d against `vae`
    <out>/<grid>/figures/<kind>.<dataset>.{png,pdf}
    <out>/<grid>/images/<run_id>.<name>.png      stored reconstructions / samples / noise grids
    <out>/<grid>/MANIFEST                        the files above (stale ones are removed next time)

Output is deterministic: rows are sorted, floats have fixed formats, figures carry no dates or
version strings, so running twice on the same records gives byte-identical files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .figures import (Figure, figure_au_vs_beta, figure_curves, figure_noise, figure_per_class, figure_spectra,
                      figure_style, figure_tradeoff, palette)
from .format import md_escape, slug
from .load import BASELINE, GridData, Setting, find_grids, load_grid_records, method_order, order
from .missing import missing_section
from .stats import COMPARED, N_TOO_SMALL, compare_with_vae
from .tables import COLUMNS, comparison_csv, comparison_table, headlines, settings_csv, settings_table, stat_cells


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


def _md_table_links(folder: str, stem: str) -> str:
    return " · ".join(f"[{kind}]({folder}/tables/{stem}.{ext})" for kind, ext in
                      (("Markdown", "md"), ("LaTeX", "tex"), ("CSV", "csv")))


def _provenance(data: GridData) -> list[str]:
    statuses: dict[str, int] = {}
    for r in data.runs:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    counts = ", ".join(f"{v} {k}" for k, v in sorted(statuses.items(), key=lambda kv: (kv[0] != "ok", kv[0])))
    commits = sorted({(((r.record.environment or {}).get("git") or {}).get("commit") or "unknown")[:12]
                      + (" (dirty)" if (((r.record.environment or {}).get("git") or {}).get("dirty")) else "")
                      for r in data.runs})
    devices = sorted({str(r.record.device) for r in data.runs if r.record.device})
    seeds = sorted({r.seed for r in data.runs}, key=order)
    methods = sorted({r.setting["method"] for r in data.runs}, key=method_order)
    unreadable = f", {len(data.unreadable)} unreadable" if data.unreadable else ""
    return [f"- records: {len(data.runs)} ({counts}){unreadable}",
            f"- data sets: {', '.join(data.datasets()) or '—'}; methods: {', '.join(methods) or '—'}; "
            f"seeds: {', '.join(map(str, seeds)) or '—'}",
            f"- code: {', '.join(f'`{c}`' for c in commits) or 'unknown'}; devices: {', '.join(devices) or 'unknown'}"]


def _copy_artifacts(data: GridData, chosen: Sequence[Setting], writer: Writer,
                    folder: str) -> dict[str, dict[str, str]]:
    """Stored images of the first ok seed (with images) of each headline setting:
    ``{name: {setting key: report-relative path}}``."""
    found: dict[str, dict[str, str]] = {}
    for s in chosen:
        for run in s.ok:
            artifacts = run.record.artifacts or {}
            copied = False
            for name, filename in sorted(artifacts.items()):
                if not isinstance(filename, str) or Path(filename).name != filename or not filename.endswith(".png"):
                    continue
                source = data.runs_dir / filename
                if not source.is_file():
                    continue
                rel = writer.add(f"{folder}/images/{slug(filename)}", source.read_bytes())
                found.setdefault(str(name), {})[s.key] = rel
                copied = True
            if copied:
                break
    return found


ARTIFACT_CAPTIONS = {"reconstructions": "Reconstructions: test images (top rows) over their decoded posterior means "
                                        "(bottom rows)",
                     "samples": "Prior samples: decoded means of z ~ N(0, I)",
                     "noise": "Noise grid: decoded means of posterior means plus growing noise (variance s^2)"}


def report_grid(data: GridData, writer: Writer, figure_no: list[int]) -> list[str]:
    """Write one grid's tables / figures / images; return its README section."""
    folder = slug(data.name)
    lines = [f"## Grid `{data.name}`", ""]
    description = data.description
    if description:
        lines += [f"*{description}*", ""]
    lines += _provenance(data) + [""]
    chosen = headlines(data)
    comparisons = compare_with_vae(data)
    colours = palette(s.method for s in data.settings)

    # headline
    lines += ["### Headline: best setting per method", ""]
    if chosen:
        p_au = {c.setting.key: c.results.get("au") for c in comparisons}
        extra = {"p (AU vs vae)": [("baseline" if s.method == BASELINE else
                                    (stat_cells(p_au.get(s.key), 3)[1] if p_au.get(s.key) else "no baseline"))
                                   for s in chosen]}
        headline = settings_table(chosen, with_dataset=True, extra=extra)
        writer.add(f"{folder}/tables/headline.md", headline.markdown(notes=True))
        writer.add(f"{folder}/tables/headline.tex", headline.latex(
            f"Best setting per method (grid {data.name}): mean ± std over seeds; bold: best per column.",
            f"tab:{folder}-headline"))
        writer.add(f"{folder}/tables/headline.csv", settings_csv(chosen))
        lines += [headline.markdown(),
                  "Best setting of a method = highest mean AU; ties broken by the lower mean IW-NLL "
                  "(−ELBO where IW-NLL is not recorded). Chosen on the evaluation (test) split itself, so "
                  "slightly optimistic. **Bold**: best per column — higher AU and MI (MI only below its cap), "
                  "lower IW-NLL, rec and time; KL is not marked (a higher rate is neither better nor worse on "
                  "its own); rec and IW-NLL only between rows with the same likelihood. "
                  "p: Welch's t-test of AU against `vae` on the same data set and architecture.",
                  *[f"{note}." for note in headline.notes], "",
                  "Tables: " + _md_table_links(folder, "headline"), ""]
    else:
        lines += ["No ok runs yet, so there is no headline table.", ""]

    # against vae
    lines += [f"### Against the plain VAE (`{BASELINE}`)", ""]
    if comparisons:
        table = comparison_table(comparisons, ["au", "nll"])
        full = comparison_table(comparisons, COMPARED)
        writer.add(f"{folder}/tables/vs_vae.md", full.markdown())
        writer.add(f"{folder}/tables/vs_vae.tex", full.latex(
            f"Against {BASELINE} (grid {data.name}): difference of means, Welch's t-test p (raw and Holm-adjusted "
            "per data set and metric) and Cohen's d.", f"tab:{folder}-vs-vae"))
        writer.add(f"{folder}/tables/vs_vae.csv", comparison_csv(comparisons))
        lines += [table.markdown(),
                  f"Δ: method mean − `{BASELINE}` mean; p: Welch's t-test (scipy `ttest_ind`, `equal_var=False`), "
                  "two-sided; Holm: adjusted over the settings of a data set for that metric; d: Cohen's d with "
                  f"the pooled standard deviation. \"{N_TOO_SMALL}\": fewer than 2 ok seeds on a side. With few "
                  "seeds, read p and d as rough indications only. KL, MI and rec: "
                  + _md_table_links(folder, "vs_vae") + ".", ""]
    else:
        lines += [f"Nothing to compare: no ok runs of methods other than `{BASELINE}`.", ""]

    # figures
    lines += ["### Figures", ""]
    figures: list[Figure] = []
    for dataset in data.datasets():
        settings = data.settings_of(dataset)
        mine = [s for s in chosen if s.dataset == dataset]
        with figure_style():
            figures += [figure_au_vs_beta(dataset, settings, colours), figure_tradeoff(dataset, settings, colours),
                        figure_curves(dataset, mine, colours), figure_per_class(dataset, mine),
                        figure_spectra(dataset, mine, colours), figure_noise(dataset, mine, colours)]
    skipped = []
    for f in figures:
        if f.png is None:
            skipped.append(f"- {f.kind} ({f.dataset}): {f.skipped}.")
            continue
        png = writer.add(f"{folder}/figures/{f.stem}.png", f.png)
        pdf = writer.add(f"{folder}/figures/{f.stem}.pdf", f.pdf or b"")
        figure_no[0] += 1
        lines += [f"![{f.kind} {f.dataset}]({png})", "",
                  f"*Figure {figure_no[0]}. {f.caption}* ([PDF]({pdf}))", ""]
    artifacts = _copy_artifacts(data, chosen, writer, folder)
    for name in sorted(artifacts, key=lambda n: (list(ARTIFACT_CAPTIONS).index(n) if n in ARTIFACT_CAPTIONS else 9, n)):
        for dataset in data.datasets():
            cells = [(s, artifacts[name][s.key]) for s in chosen if s.dataset == dataset and s.key in artifacts[name]]
            if not cells:
                continue
            lines += ["| " + " | ".join(md_escape(s.method) for s, _ in cells) + " |",
                      "|" + "---|" * len(cells),
                      "| " + " | ".join(f"![{md_escape(s.method)}]({rel})" for s, rel in cells) + " |", ""]
            figure_no[0] += 1
            caption = ARTIFACT_CAPTIONS.get(name, f"Stored image `{name}`")
            lines += [f"*Figure {figure_no[0]}. {caption} on {dataset}, headline setting per method, first ok seed "
                      "(images stored with the runs).*", ""]
    if not any(f.png for f in figures) and not artifacts:
        lines += ["No figures: no ok runs yet.", ""]
    if skipped:
        lines += ["Not drawn:", "", *skipped, ""]

    # full tables
    lines += ["### Full tables", ""]
    for dataset in data.datasets():
        settings = data.settings_of(dataset)
        table = settings_table(settings)
        stem = slug(dataset)
        writer.add(f"{folder}/tables/{stem}.md", table.markdown(notes=True))
        writer.add(f"{folder}/tables/{stem}.tex", table.latex(
            f"{dataset} (grid {data.name}): every method and setting, mean ± std over seeds (n); "
            "bold: best per column.", f"tab:{folder}-{stem}"))
        writer.add(f"{folder}/tables/{stem}.csv", settings_csv(settings))
        lines += [f"{dataset}, {len(settings)} settings: {_md_table_links(folder, stem)}", "",
                  f"<details><summary>{dataset}: every setting</summary>", "", table.markdown(),
                  *[f"{note}." for note in table.notes], "", "</details>", ""]

    lines += ["### What is missing", "", *missing_section(data), ""]
    return lines


def build_report(results: Path, out: Path, grid: str | None = None, page: str = "README.md") -> tuple[int, str]:
    """Write the report: ``out/page`` and a folder per grid; returns (exit code, message for stderr).

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
    lines = ["# Benchmark report", "",
             f"Generated by `python -m benchmark report` from the run records in `{str(results).rstrip('/')}/` "
             "(nothing retrained); do not edit by hand — rerun the command. Metrics: mean ± standard deviation "
             "over seeds of the ok runs, n = number of ok seeds. Column meanings:", ""]
    lines += [f"- **{c.header}**: {c.meaning}." for c in COLUMNS] + [""]
    figure_no = [0]
    summaries = []
    for grid_dir in grid_dirs:
        data = load_grid_records(grid_dir)
        folder = slug(data.name)
        before = set(writer.files)
        lines += report_grid(data, writer, figure_no)
        mine = sorted(rel for rel in writer.files if rel not in before)
        writer.add(f"{folder}/MANIFEST", "".join(rel[len(folder) + 1:] + "\n" for rel in mine + [f"{folder}/MANIFEST"]))
        manifests[folder] = _old_manifest(out, folder)
        summaries.append(f"{data.name}: {len(data.runs)} records")
    writer.add(page, "\n".join(lines).rstrip("\n") + "\n")
    writer.write(manifests)
    return 0, f"report of {'; '.join(summaries)} -> {out}/{page} ({len(writer.files)} files)"
