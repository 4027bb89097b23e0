"""The report of text VAEs (sentences; benchmark/report/tables.py's text columns and the pages built
on them): NLL and PPL columns with their legend, the comparison with the language model `lstm-lm`,
the recorded greedy decodings (HTML-escaped), steps the records mark not applicable, per-seed AU
counts and KL, and the README table. Records are written by the tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from benchmark.report.build import build_report
from benchmark.report.exact import permutation_test
from benchmark.report.load import load_grid_records
from benchmark.report.tables import TEXT_LEGEND, columns_of
from benchmark.results.plan import Plan, PlannedRun
from benchmark.results.store import ResultStore
from fake_records import record, write_records

GRID = "text"
SEEDS = range(5)
TOKENS = 4000  # predicted tokens of the IW-NLL's sentences
NOT_APPLICABLE = {"mse": "per-pixel error: a sentence has no pixels",
                  "decoder_geometry": "decoder Jacobian in data space: tokens are discrete",
                  "noise_sensitivity": "distances between decoded images: tokens are discrete",
                  "images": "image grids: the data are sentences (see texts)"}
VAE, LM, FB = ("vae", ()), ("lstm-lm", ()), ("free-bits", (("lam", 0.25),))
# setting -> per-seed (IW-NLL, KL, MI, AU count): the VAE collapsed (KL < 0.5, AU 0), free bits above the LM
NUMBERS = {VAE: [(100.2 + 0.1 * s, 0.001 * s, 0.0, 0) for s in SEEDS],
           LM: [(100.0 + 0.05 * s, 0.0, 0.0, 0) for s in SEEDS],
           FB: [(101.0 + 0.1 * s, 8.0 + 0.1 * s, 0.5, 3 + s % 2) for s in SEEDS]}


def text_record(setting: tuple, seed: int, grid: str = GRID) -> dict:
    """An ok record of a text run on `ptb` with this module's numbers, texts with markup characters
    and the steps the evaluation marks not applicable to sentences."""
    method, hp = setting
    nll, kl, mi, au = NUMBERS[setting][seed]
    r = record(method, hp, seed)
    r["grid"] = grid
    for key in ("vectors", "per_class", "noise", "curves"):
        r.pop(key, None)
    r["artifacts"] = {}
    r["config"]["dataset"] = {"name": "ptb", "train_size": 400, "test_size": None}
    r["config"]["model"].update(arch="lstm-small", likelihood="categorical", options={"embed": 8, "hidden": 16})
    r["metrics"] = {"au": au / 4, "au_count": au, "kl": kl, "mi": mi, "rec": nll - 1.0, "neg_elbo": nll + 2.0,
                    "nll": nll, "ppl": math.exp(nll * 200 / TOKENS), "ppl_elbo": math.exp((nll + 2.0) * 200 / TOKENS)}
    r["estimators"] = {"split": "test", "examples": 300, "nll_samples": 20, "nll_examples": 200, "nll_tokens": TOKENS,
                       "tokens": 6000, "not_applicable": NOT_APPLICABLE, "mi_cap": math.log(300),
                       "mi_cap_margin": 0.25, "mi_mixture_size": 300}
    r["texts"] = {"reconstructions": [f"the <unk> *rose* {i} % => a <unk> [fell] `{seed}`" for i in range(8)],
                  "samples": [f"sample {i} <unk> & co _x_" for i in range(8)]}
    return r


def write_grid(root: Path, settings: list[tuple], grid: str = GRID) -> Path:
    records = [text_record(setting, seed, grid) for setting in settings for seed in SEEDS]
    write_records(root / grid / "runs", records)
    runs = tuple(PlannedRun.from_dict(dict(r, named=list(r["config"]["hyperparameters"])))
                 for r in records)
    declared = {"sha256": "0" * 64, "first_seen": "2026-01-01T00:00:00+00:00", "results_before": 0, "runs": len(runs)}
    ResultStore(root, grid).write_plan(Plan(grid, "text", f"{grid}.toml", runs, declared=declared, headline=(
        {"method": "free-bits", "hyperparameters": {"lam": 0.25}},)))
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("text")
    results = write_grid(base / "results", [VAE, LM, FB])
    write_grid(results, [VAE, FB], grid="nolm")
    code, message = build_report(results, base / "reports")
    assert code == 0, message
    return {"base": base, "results": results, "out": base / "reports"}


def cells(table: str, *start: str) -> list[str]:
    """The cells of the Markdown table row starting with ``start``."""
    prefix = "| " + " | ".join(start) + " |"
    found = [line for line in table.splitlines() if line.startswith(prefix)]
    assert len(found) == 1, (prefix, table)
    return [c.strip() for c in found[0].strip("|").split(" | ")]


def test_text_tables_show_nll_ppl_and_the_collapse_signature(built):
    table = (built["out"] / GRID / "tables" / "ptb.md").read_text()
    header = [c.strip() for c in table.splitlines()[0].strip("|").split(" | ")]
    assert header == ["method", "setting", "AU ↑", "KL", "MI ↑", "NLL ↓", "PPL ↓", "−ELBO ↓", "rec ↓", "time (s)", "n",
                      "AU count per seed", "KL per seed"]
    vae = cells(table, "vae")
    assert vae[header.index("AU count per seed")] == "0 0 0 0 0"
    assert vae[header.index("KL per seed")] == "0.00 0.00 0.00 0.00 0.00"
    ppl = [math.exp(n * 200 / TOKENS) for n, *_ in NUMBERS[LM]]
    assert cells(table, "lstm-lm")[header.index("PPL ↓")] == f"**{sum(ppl) / 5:.2f} ± {pd.Series(ppl).std():.2f}**"
    # the language model has no z: no AU, KL or MI of it is shown (nor compared, nor bolded)
    assert [cells(table, "lstm-lm")[header.index(h)] for h in ("AU ↑", "KL", "MI ↑", "AU count per seed",
                                                                "KL per seed")] == ["—"] * 5
    legend = TEXT_LEGEND.replace("</s>", "&lt;/s&gt;")  # Markdown: shown as it is, never an HTML tag
    assert f"{legend}; here K = 20 on 200 test sentences." in table
    head = (built["out"] / GRID / "tables" / "headline.md").read_text()
    assert "| free-bits | λ=0.25 |" in head and "NLL ↓ | PPL ↓" in head and "KL per seed" in head
    assert r"\textless{}/s\textgreater{}" in (built["out"] / GRID / "tables" / "ptb.tex").read_text()
    page = (built["out"] / GRID / "ptb.md").read_text()
    assert "PPL = exp(total IW-NLL / predicted tokens, `</s>` included)" in page  # code: shown as it is
    assert "IW-NLL ↓" not in page and "**NLL** (exploratory)" in page and "**PPL** (exploratory)" in page
    readme = (built["out"] / "README.md").read_text()
    assert "**PPL** (sentences): " in readme and "- **NLL** (sentences): IW-NLL: nats per sentence" in readme


def test_settings_of_both_kinds_get_both_kinds_of_columns(built):
    settings = load_grid_records(built["results"] / GRID).settings
    assert [c.header for c in columns_of(settings)][3:5] == ["NLL ↓", "PPL ↓"]
    for run in settings[0].runs:  # as if the vae were on images: both kinds, IW-NLL then PPL
        run.record.estimators.pop("tokens")
    assert [c.header for c in columns_of(settings)][3:7] == ["IW-NLL ↓", "PPL ↓", "−ELBO ↓", "rec ↓"]
    assert [c.header for c in columns_of(settings[:1])][3:6] == ["IW-NLL ↓", "−ELBO ↓", "rec ↓"]


def test_against_the_language_model(built):
    page = (built["out"] / GRID / "ptb.md").read_text()
    block = page.split("### Against the LSTM language model (`lstm-lm`)", 1)[1].split("\n### ", 1)[0]
    assert "a VAE gains from z only if its NLL is below the LM's" in block.replace("A VAE gains", "a VAE gains")
    assert "no Holm family" in block and "p Holm" not in block
    table = (built["out"] / GRID / "tables" / "vs_lm.nll.ptb.md").read_text()
    assert table.splitlines()[0] == ("| dataset | method | setting | n vs lstm-lm | Δ [95% CI] | p exact | min p | "
                                     "Cliff's δ |")
    csv = pd.read_csv(built["out"] / GRID / "tables" / "vs_lm.csv")
    assert sorted(set(zip(csv["method"], csv["metric"]))) == [("free-bits", "nll"), ("free-bits", "ppl"),
                                                              ("vae", "nll"), ("vae", "ppl")]
    for setting in (VAE, FB):
        row = csv[(csv["method"] == setting[0]) & (csv["metric"] == "nll")].iloc[0]
        a, b = [n for n, *_ in NUMBERS[setting]], [n for n, *_ in NUMBERS[LM]]
        assert row["diff"] == pytest.approx(sum(a) / 5 - sum(b) / 5) and json.loads(row["values_lm"]) == b
        assert row["p_exact"] == pytest.approx(permutation_test(a, b).p) and row["baseline"] == "lstm-lm"
    family = (built["out"] / "README.md").read_text().split("## Grid `text`", 1)[1]
    assert "m = 1 comparisons" in family  # the language model (no latents) is never in the vae family
    # no language model in the grid: no block
    assert "Against the LSTM language model" not in (built["out"] / "nolm" / "ptb.md").read_text()
    assert not (built["out"] / "nolm" / "tables" / "vs_lm.csv").exists()


def test_samples_are_shown_as_recorded_never_as_markup(built):
    page = (built["out"] / GRID / "ptb.md").read_text()
    samples = page.split("### Samples", 1)[1].split("\n### ", 1)[0]
    assert "<unk>" not in samples and "&lt;unk&gt;" in samples
    assert r"- reconstruction: the &lt;unk&gt; \*rose\* 0 % =&gt; a &lt;unk&gt; \[fell\] \`0\`" in samples
    assert r"- sample: sample 2 &lt;unk&gt; &amp; co \_x\_" in samples and "sample 3" not in samples
    order = [samples.index(f"**{m}**") for m in ("vae", "free-bits", "lstm-lm")]
    assert order == sorted(order)  # report order: vae first, then methods by name
    html = (built["out"] / GRID / "ptb.html").read_text()
    assert "<li>sample: sample 0 &lt;unk&gt; &amp; co _x_</li>" in html and "&amp;lt;" not in html


def test_steps_not_applicable_to_sentences_are_said_so(built):
    page = (built["out"] / GRID / "ptb.md").read_text()
    assert "- noise (ptb): not applicable: distances between decoded images: tokens are discrete." in page
    assert "- images_samples (ptb): not applicable: image grids: the data are sentences (see texts)." in page
    assert "mse — per-pixel error: a sentence has no pixels" in page  # the page's legend, from the records
    readme = (built["out"] / "README.md").read_text()
    assert "noise sensitivity (`noise`) not recorded" not in readme


def test_readme_table_of_a_text_grid(built):
    readme = (built["out"] / GRID / "readme.md").read_text()
    lines = readme.splitlines()
    assert lines[0] == ("| method | setting | AU count per seed | KL per seed | KL | MI | Δ MI vs `vae` (p) | NLL | PPL | "
                        "Δ NLL vs `lstm-lm` (p) |")
    fb = cells(readme, "`free-bits`")
    assert fb[2:5] == ["3 4 3 4 3", "8.00 8.10 8.20 8.30 8.40", "8.20"] and fb[6] == "+0.50 (0.0079)"
    assert fb[9] == "+1.10 (0.0079)" and cells(readme, "`lstm-lm`")[9] == "—"
    # the language model has no z: its latent columns read "—", not a comparison of zeros with the VAE's
    assert cells(readme, "`lstm-lm`")[2:7] == ["—"] * 5 and "has no latent" in lines[-1]
    assert lines[-1].startswith("Grid `text`, 5 seeds per setting:") and "not corrected" in lines[-1]


def test_readme_table_names_settings_every_row_shares_once():
    from benchmark.report.readme import shared_parts
    from benchmark.report.load import Setting

    rows = [Setting(key=str(k), method="m", dataset="d", values={}, parts=[("hp.b", f"b={k}"), ("model.init", "init=uniform")])
            for k in range(2)]
    assert shared_parts(rows) == [("model.init", "init=uniform")]
    assert shared_parts(rows[:1]) == []  # one row: its label stays whole


def test_deterministic(built):
    again = built["base"] / "again"
    assert build_report(built["results"], again)[0] == 0
    first = {p.relative_to(built["out"]): p.read_bytes() for p in built["out"].rglob("*") if p.is_file()}
    assert first == {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
