"""Report sections that appear whenever a data set's records allow them (the paper's Fashion-MNIST
claims, but generic): architectures (settings differ in ``model.arch``), warm-up (lr-vae settings
differ in ``alpha_schedule``) and noise sensitivity (records hold ``noise``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .exact import permutation_test, sample_mean_std
from .figures import Figure
from .figures_curves import figure_curves
from .figures_latents import figure_images
from .figures_sweeps import figure_architectures
from .format import Table, fixed, symbol_text
from .load import BASELINE, Setting, method_order, order
from .tables import (COLUMN, SHORT_NOTE, au_counts, cell_text, invalid_notes, label_text, p_text, per_seed_keys,
                     per_seed_text)


@dataclass
class Section:
    """A titled part of a data set's page: text, tables (name -> Table, saved as md / tex / csv) and figures."""

    title: str
    intro: str
    tables: dict[str, Table] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)  # table name -> the line above it


def preset(s: Setting) -> str:
    """The model / train settings of a setting's label (e.g. ``arch=mlp-deep, depth=4, epochs=8``)."""
    return ", ".join(text for c, text in s.parts if c.startswith(("model.", "train."))) or "—"


def hp_label(s: Setting, without: Sequence[str] = ()) -> str:
    """The hyperparameter parts of a setting's label (symbols), leaving out ``without``."""
    return ", ".join(symbol_text(text) for c, text in s.parts if c.startswith("hp.") and c not in without) or "—"


def _table(rows: list[list[str]], header: list[str], align: str, settings: Sequence[Setting],
           keys: Sequence[str] = ()) -> Table:
    """A section's table, its notes on short settings and on invalid values of metrics ``keys``."""
    short = [SHORT_NOTE] if any(s.short for s in settings) else []
    return Table.plain(header, rows, align, short + invalid_notes(settings, keys))


def architectures(dataset: str, settings: Sequence[Setting], chosen: Sequence[Setting]) -> Section | None:
    """AU / KL / MI / IW-NLL per method and architecture preset (headline settings), per-seed values."""
    if len({s.config.arch for s in settings}) < 2:
        return None
    rows_of = sorted([s for s in chosen if s.ok], key=lambda s: (method_order(s.method), preset(s), s.sort_key))
    section = Section("Architectures", f"The headline setting of every method under each "
                      f"architecture preset of {dataset} (the settings differ in `model.arch`): mean ± std over "
                      "seeds and the per-seed values (seed order).")
    keys = ["au", "kl", "mi", "nll"]
    au = "au_count" if per_seed_keys(rows_of)[0] == "au_count" else "au"
    header = ["method", "setting", "preset"] + [COLUMN[k].header for k in keys] + [
        "n", f"{COLUMN[au].name} per seed", "KL per seed"]
    rows = [[s.method, hp_label(s), preset(s), *(cell_text(s, k)[0] for k in keys), s.n_text,
             per_seed_text(s, au), per_seed_text(s, "kl")] for s in rows_of]
    section.tables["architectures"] = _table(rows, header, "lpp" + "r" * 5 + "rr", rows_of, keys)
    section.figures.append(figure_architectures(dataset, rows_of, keys))
    return section


def warmup(dataset: str, settings: Sequence[Setting]) -> Section | None:
    """lr-vae with different ``alpha_schedule`` (linear warm-up vs constant): table, exact test of
    the schedule's effect on AU and KL for each pair, and AU / KL / loss curves."""
    mine = [s for s in settings if s.method == "lr-vae" and s.config.hp("alpha_schedule") is not None and s.ok]
    if len({s.config.hp("alpha_schedule") for s in mine}) < 2:
        return None
    rest = lambda s: json.dumps([preset(s), hp_label(s, ["hp.alpha_schedule"])])  # noqa: E731
    groups: dict[str, list[Setting]] = {}
    for s in mine:
        groups.setdefault(rest(s), []).append(s)
    paired = {k: sorted(v, key=lambda s: order(s.config.hp("alpha_schedule"))) for k, v in groups.items()
              if len({s.config.hp("alpha_schedule") for s in v}) > 1}
    if not paired:
        return None
    section = Section("Warm-up of α", f"LR-VAE on {dataset} with the same α_T, β and architecture under "
                      "each α schedule (`linear`: warmed up from 0 over the run; `constant`: α_T from the first "
                      "step). Δ: this schedule's mean − the `linear` one's; p: exact permutation test over the seeds.")
    header = ["preset", "setting", "schedule", "AU ↑", "KL", "IW-NLL ↓", "n", "AU per seed", "Δ AU", "p (AU)",
              "Δ KL", "p (KL)"]
    rows = []
    for key in sorted(paired, key=lambda k: min(s.sort_key for s in paired[k])):
        members = paired[key]
        linear = next((s for s in members if s.config.hp("alpha_schedule") == "linear"), members[0])
        for s in members:
            cells = []
            mine, theirs = au_counts(s), au_counts(linear)
            counted = mine and theirs and s.config.latent_dim == linear.config.latent_dim
            for metric in ("au", "kl"):
                if metric == "au" and counted:  # Δ in active units, as the AU column; the same p
                    a, b, decimals = [float(c) for c in mine], [float(c) for c in theirs], 1
                else:
                    a, b, decimals = s.values_of(metric), linear.values_of(metric), COLUMN[metric].decimals
                if s is linear or not a or not b:
                    cells += ["—", "—"]
                    continue
                diff = math.fsum(a) / len(a) - math.fsum(b) / len(b)
                cells += [("+" if diff > 0 else "") + fixed(diff, decimals), p_text(permutation_test(a, b).p)]
            rows.append([preset(s), hp_label(s, ["hp.alpha_schedule"]), str(s.config.hp("alpha_schedule")),
                         cell_text(s, "au")[0], cell_text(s, "kl")[0], cell_text(s, "nll")[0], s.n_text,
                         per_seed_text(s, "au_count" if mine else "au"), *cells])
    section.tables["warmup"] = _table(rows, header, "ppl" + "r" * 9, [s for v in paired.values() for s in v],
                                      ["au", "kl", "nll"])
    columns = [(f"{json.loads(k)[1]}\n{json.loads(k)[0]}", v) for k, v in sorted(paired.items())]
    section.figures.append(figure_curves(
        dataset, [s for v in paired.values() for s in v], kind="warmup", keys=("test_au", "test_kl", "loss"),
        columns=columns, label=lambda s: f"α schedule: {s.config.hp('alpha_schedule')}" + (
            f" (n = {len(s.ok)} of {s.planned})" if s.short else ""),
        caption=f"Warm-up ablation on {dataset}: test AU, test KL and the training loss per epoch of LR-VAE, one "
        "block of panels per α_T / β / architecture, one line per α schedule (solid: the first in name order, "
        "`constant`; dashed: `linear`); thin lines: seeds."))
    return section


def noise(dataset: str, chosen: Sequence[Setting], runs_dir: Path) -> Section | None:
    """Distance and diversity per noise variance s² (tables) and the stored noise grids of the VAE
    and LR-VAE headline settings side by side."""
    found = [s for s in chosen if any(r.record.noise for r in s.ok)]
    if not found:
        return None
    section = Section("Noise sensitivity", f"Decoding μ + s·ε on {dataset} (headline settings): the L2 "
                      "distance of the decoded mean from the decoding of μ (pixel space; lower: the decoder ignores "
                      "the noise) and the diversity between noise draws (higher: varied images), mean ± std over "
                      "seeds per noise variance s².")
    variances = sorted({float(v) for s in found for r in s.ok for v in (r.record.noise or {}).get("variances", [])})
    for key in ("distance", "diversity"):
        rows = []
        for s in found:
            row = [s.method, label_text(s)]
            for v in variances:
                values = [float(n[key][n["variances"].index(v)]) for n in (r.record.noise or {} for r in s.ok)
                          if v in (n.get("variances") or []) and len(n.get(key) or []) == len(n["variances"])]
                mean, std = sample_mean_std(values)
                row.append("—" if mean is None else fixed(mean, 2) + ("" if std is None else f" ± {fixed(std, 2)}"))
            rows.append(row + [s.n_text])
        header = ["method", "setting"] + [f"s²={v:g}" for v in variances] + ["n"]
        section.tables[f"noise_{key}"] = _table(rows, header, "lp" + "r" * (len(variances) + 1), found)
        section.titles[f"noise_{key}"] = {"distance": "**Distance** from the noiseless decoding (L2, pixel space)",
                                          "diversity": "**Diversity** between noise draws (L2, pixel space)"}[key]
    pair = [s for s in found if s.method in (BASELINE, "lr-vae")] or list(found)
    grid = figure_images("noise", dataset, pair, runs_dir)
    grid.kind = "noise_grids"
    grid.caption = ("Noise grids side by side (" + ", ".join(f"{s.method} ({label_text(s)})" for s in pair)
                    + f") on {dataset}: each "
                    "column of a grid decodes one test image's posterior mean μ plus noise of variance s² (rows, "
                    "labelled), the same noise direction down the column; one grid per seed (rows of the figure).")
    section.figures.append(grid)
    return section
