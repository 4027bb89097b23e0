"""Every number in the README and in docs/ is generated from, or tested against, the records.

The files: ``README.md`` and every ``docs/*.md`` (the result prose lives in the README's
``## Headline`` and in ``docs/results.md``).

Generated: a block between ``<!-- generated from reports/<grid>/readme.md -->`` and
``<!-- end generated -->`` (outside a code fence) must equal that file of the committed
``reports/`` (which ``python -m benchmark report`` writes from the records;
``python -m benchmark.tools.readme`` copies it in), so a table cannot drift from the records the
committed reports were made from.

Tested: every decimal number (digits, a decimal point, digits: ``5.55``, ``0.008``; a sign is not
part of it) outside the generated blocks of a checked section (a ``## `` section that holds a
generated block) must appear verbatim, as a whole number, in a generated file of its grid: any
``reports/<grid>/**/*.md`` or ``*.csv``. Its grid is the one named in backticks
in the nearest preceding ``### ...`` heading that names one (the last name in backticks there,
e.g. ``### The classic remedies (committed results of `remedies`)``); a number with no such
heading above it in its section fails. So quote a number as the report writes it (its rounding
included), under the heading of the grid it comes from. Numbers from the literature go between
``<!-- published -->`` and ``<!-- end published -->``: there a number may also be a ``value`` of
``docs/published.csv`` (each with its source), and nowhere else. A section adopts the rule by
holding a generated block: a section of results (one with a ``### ... (committed results of
`grid`)`` heading) without one (written before this rule) is not checked yet, and the test says
which.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import pytest

from benchmark.tools.readme import blocks, default_files, main

ROOT = Path(__file__).resolve().parents[2]
RESULTS_HEADING = re.compile(r"^### .*\(committed results of `[^`]+`\)")
PUBLISHED_START, PUBLISHED_END = "<!-- published -->", "<!-- end published -->"
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?!\.?\d)")


def block_problems(readme: str, reports: Path) -> list[str]:
    """Generated blocks whose content is not their file's (or whose file is missing)."""
    problems = []
    for block in blocks(readme):
        path = reports / block.grid / block.file
        if not path.is_file():
            problems.append(f"line {block.start + 1}: {path} is missing")
        elif block.content != path.read_text():
            problems.append(f"line {block.start + 1}: the block differs from {path}")
    return problems


def report_numbers(reports: Path, grid: str) -> set[str]:
    """Every decimal number in the grid's generated Markdown and CSV files."""
    return {n for path in sorted((reports / grid).rglob("*")) if path.suffix in (".md", ".csv")
            for n in DECIMAL.findall(path.read_text())}


def published_numbers(table: Path) -> set[str]:
    """The ``value`` column of the published-numbers table (docs/published.csv), as written there."""
    with table.open(newline="") as f:
        return {row["value"] for row in csv.DictReader(f)}


def sections_with_blocks(readme: str) -> set[str]:
    """The ``## `` sections that hold a generated block: they adopted the rule and are checked."""
    lines, starts = readme.splitlines(), {b.start for b in blocks(readme)}
    found, section = set(), None
    for i, line in enumerate(lines):
        if line.startswith("## "):
            section = line[3:].strip()
        elif i in starts and section is not None:
            found.add(section)
    return found


def result_sections(readme: str) -> set[str]:
    """The ``## `` sections holding a ``### ... (committed results of `grid`)`` heading: result prose."""
    found, section = set(), None
    for line in readme.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif RESULTS_HEADING.match(line) and section is not None:
            found.add(section)
    return found


def documents() -> dict[str, str]:
    """README.md and every docs/*.md, by path relative to the repository."""
    return {path.relative_to(ROOT).as_posix(): path.read_text() for path in default_files(ROOT)}


def number_problems(readme: str, reports: Path, published: frozenset[str] = frozenset()) -> list[str]:
    """Decimal numbers of the README's checked sections (outside generated blocks) that do not
    appear in their grid's generated files (nor, inside a published block, in ``published``), as
    ``line N: number (why)``."""
    lines = readme.splitlines()
    inside = {i for b in blocks(readme) for i in range(b.start, b.end + 1)}
    adopted = sections_with_blocks(readme)
    problems, section, grid, known, quoting = [], None, None, {}, False
    for i, line in enumerate(lines):
        if line.strip() in (PUBLISHED_START, PUBLISHED_END):
            quoting = line.strip() == PUBLISHED_START
            continue
        if line.startswith("## "):
            section, grid = line[3:].strip(), None
            continue
        if section not in adopted or i in inside:
            continue
        if line.startswith("### "):
            grid = (re.findall(r"`([^`]+)`", line) or [grid])[-1]
            continue
        for number in DECIMAL.findall(line):
            if grid is None:
                problems.append(f"line {i + 1}: {number} (no ### heading above it names a grid in backticks)")
            elif quoting and number in published:
                continue
            elif number not in known.setdefault(grid, report_numbers(reports, grid)):
                problems.append(f"line {i + 1}: {number} (not in reports/{grid}/**/*.md or *.csv)")
    return problems


def test_generated_blocks_equal_the_committed_reports():
    problems = {name: block_problems(text, ROOT / "reports") for name, text in documents().items()}
    assert {name: found for name, found in problems.items() if found} == {}


def test_prose_numbers_appear_in_their_grids_reports():
    docs = documents()
    if not any(sections_with_blocks(text) for text in docs.values()):
        pytest.skip("no section of README.md or docs/ holds a generated block yet: written before the numbers rule")
    published = frozenset(published_numbers(ROOT / "docs" / "published.csv"))
    problems = {}
    for name, text in docs.items():
        for section in sorted(result_sections(text) - sections_with_blocks(text)):
            warnings.warn(f"{name} section {section!r} holds no generated block: its numbers are not checked yet")
        problems[name] = number_problems(text, ROOT / "reports", published)
    assert {name: found for name, found in problems.items() if found} == {}


def test_the_result_prose_is_checked():
    """The README's headline and the text results in docs/ hold generated blocks, so their numbers are
    checked (a block deleted there would silently turn the check off)."""
    docs = documents()
    assert "Headline" in sections_with_blocks(docs["README.md"])
    assert "Text VAEs" in sections_with_blocks(docs["docs/results.md"])


TABLE = "| method | MI |\n|---|---:|\n| `vae` | 5.55 |\n\nGrid `g`, 5 seeds per setting.\n"
README = """# Title

Intro 1.5 (not a checked section).

## Headline

### The classic remedies (committed results of `g`)

<!-- generated from reports/g/readme.md -->
{table}<!-- end generated -->

The VAE carries 5.55 nats of MI (p = 0.0079), +0.35 more with annealing.

### Another grid (`h`)

Its AU is 0.156.

## Running grids

Not checked: 9.99.
"""


def fake(tmp_path: Path, table: str = TABLE, prose: str = "0.35") -> tuple[Path, Path]:
    """A README and reports folder: grid `g` with its readme.md and a CSV, grid `h` with a table."""
    reports = tmp_path / "reports"
    (reports / "g" / "tables").mkdir(parents=True)
    (reports / "g" / "readme.md").write_text(TABLE)
    (reports / "g" / "tables" / "vs_vae.csv").write_text("metric,diff,p_exact\nmi,0.35,0.007936507937\n")
    (reports / "g" / "page.md").write_text("p exact 0.0079\n")
    (reports / "h").mkdir()
    (reports / "h" / "summary.md").write_text("| AU |\n|---|\n| 0.156 ± 0.010 |\n")
    readme = tmp_path / "README.md"
    readme.write_text(README.format(table=table).replace("+0.35", f"+{prose}"))
    return readme, reports


def test_the_checks_pass_on_a_readme_that_matches_its_reports(tmp_path):
    readme, reports = fake(tmp_path)
    assert block_problems(readme.read_text(), reports) == []
    assert number_problems(readme.read_text(), reports) == []


def test_a_drifted_block_fails_and_the_tool_restores_it(tmp_path, capsys):
    readme, reports = fake(tmp_path, table=TABLE.replace("5.55", "5.56"))
    assert block_problems(readme.read_text(), reports) == ["line 9: the block differs from "
                                                           f"{reports / 'g' / 'readme.md'}"]
    args = ["--readme", str(readme), "--reports", str(reports)]
    assert main([*args, "--check"]) == 1 and "reports/g/readme.md" in capsys.readouterr().err
    assert main(args) == 0 and main([*args, "--check"]) == 0
    assert readme.read_text() == README.format(table=TABLE)  # only the block changed
    assert block_problems(readme.read_text(), reports) == []


def test_a_drifted_prose_number_fails(tmp_path):
    readme, reports = fake(tmp_path, prose="0.36")
    assert number_problems(readme.read_text(), reports) == ["line 17: 0.36 (not in reports/g/**/*.md or *.csv)"]
    # a number under the other grid's heading is looked up in that grid's files only
    text = readme.read_text().replace("Its AU is 0.156.", "Its AU is 0.156, its MI 5.55.")
    assert number_problems(text, reports)[1:] == ["line 21: 5.55 (not in reports/h/**/*.md or *.csv)"]
    # a number with no grid heading above it in a checked section
    text = readme.read_text().replace("## Headline\n", "## Headline\n\nThree grids, 1.5 hours.\n")
    assert "line 7: 1.5 (no ### heading above it names a grid in backticks)" in number_problems(text, reports)


def test_the_tool_refuses_missing_files_and_open_blocks(tmp_path, capsys):
    readme, reports = fake(tmp_path)
    (reports / "g" / "readme.md").unlink()
    before = readme.read_text()
    assert main(["--readme", str(readme), "--reports", str(reports)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "readme.md is missing" in error and readme.read_text() == before
    readme.write_text(before.replace("<!-- end generated -->", ""))
    assert main(["--readme", str(readme), "--reports", str(reports), "--check"]) == 2
    assert "has no `<!-- end generated -->`" in capsys.readouterr().err


def test_the_tool_updates_the_readme_and_docs_by_default(tmp_path, capsys, monkeypatch):
    readme, reports = fake(tmp_path, table=TABLE.replace("5.55", "5.56"))
    (tmp_path / "docs").mkdir()
    fenced = "# Report\n\n```\n<!-- generated from reports/g/readme.md -->\n(its content)\n<!-- end generated -->\n```\n"
    (tmp_path / "docs" / "report.md").write_text(fenced)
    (tmp_path / "docs" / "results.md").write_text(README.format(table=TABLE.replace("5.55", "5.57")))
    monkeypatch.chdir(tmp_path)
    assert blocks(fenced) == []  # markers in a code fence are an example, not a block
    assert main(["--reports", "reports", "--check"]) == 1
    err = capsys.readouterr().err
    assert "README.md: the block generated from reports/g/readme.md differs" in err
    assert "docs/results.md: the block generated from reports/g/readme.md differs" in err
    assert main(["--reports", "reports"]) == 0 and main(["--reports", "reports", "--check"]) == 0
    assert readme.read_text() == (tmp_path / "docs" / "results.md").read_text() == README.format(table=TABLE)
    assert (tmp_path / "docs" / "report.md").read_text() == fenced
    # one file with a missing grid: exit 2 and no file written, the others' blocks included
    (tmp_path / "docs" / "results.md").write_text(README.format(table=TABLE).replace("reports/g/", "reports/x/"))
    readme.write_text(README.format(table=TABLE.replace("5.55", "5.56")))
    assert main(["--reports", "reports"]) == 2
    assert readme.read_text() == README.format(table=TABLE.replace("5.55", "5.56"))


def test_published_numbers_pass_only_inside_a_published_block(tmp_path):
    readme, reports = fake(tmp_path)
    quoted = "<!-- published -->\n| He et al. | 328.1 |\n<!-- end published -->\n"
    text = readme.read_text().replace("Its AU is 0.156.\n", "Its AU is 0.156.\n\n" + quoted)
    assert number_problems(text, reports, frozenset({"328.1"})) == []
    outside = text.replace("<!-- published -->\n", "")
    assert number_problems(outside, reports, frozenset({"328.1"})) == ["line 23: 328.1 (not in reports/h/**/*.md or *.csv)"]
    assert number_problems(text, reports) == ["line 24: 328.1 (not in reports/h/**/*.md or *.csv)"]


def test_the_published_table_names_a_source_for_every_value():
    with (ROOT / "docs" / "published.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(row["source"] and row["dataset"] and row["metric"] and float(row["value"]) >= 0 for row in rows)


def test_a_section_without_generated_blocks_is_not_checked_yet(tmp_path):
    readme, reports = fake(tmp_path)
    text = readme.read_text().replace("## Running grids", "## Text VAEs\n\n### Old (`g`)\n\nIts MI was 7.77.\n\n## Running grids")
    assert number_problems(text, reports) == []  # Text VAEs holds no block: not adopted yet
    assert sections_with_blocks(text) == {"Headline"}


def test_a_block_may_name_the_table_of_every_setting(tmp_path, capsys):
    """``reports/<grid>/readme.all.md`` (every setting, not only the headline) is a block source too."""
    readme, reports = fake(tmp_path)
    every = TABLE + "| extra row |\n"
    (reports / "g" / "readme.all.md").write_text(every)
    text = readme.read_text() + "\n<!-- generated from reports/g/readme.all.md -->\nold\n<!-- end generated -->\n"
    readme.write_text(text)
    assert [(b.grid, b.file) for b in blocks(text)] == [("g", "readme.md"), ("g", "readme.all.md")]
    assert block_problems(text, reports) == [f"line 27: the block differs from {reports / 'g' / 'readme.all.md'}"]
    args = ["--readme", str(readme), "--reports", str(reports)]
    assert main([*args, "--check"]) == 1 and "reports/g/readme.all.md differs" in capsys.readouterr().err
    assert main(args) == 0 and block_problems(readme.read_text(), reports) == []
    assert readme.read_text() == text.replace("\nold\n", "\n" + every)
