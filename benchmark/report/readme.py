"""A grid's compact table for the repository's README (``<out>/<grid>/readme.md``): one row per
headline setting (every setting when the grid declares no headline) with the numbers the README
and docs/results.md quote, in the report's own formats; ``readme.all.md``: the same table of every
setting, for a grid whose headline leaves settings out. ``python -m benchmark.tools.readme`` copies
it into the generated blocks of README.md and docs/*.md."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .format import Table, fixed, symbol_text
from .load import BASELINE, LANGUAGE_MODEL, GridData, Setting
from .stats import Comparison
from .tables import (SHORT, SHORT_NOTE, all_text, cell_text, column_of, headlines, invalid_notes, no_latent, p_text,
                     per_seed_text)


def delta_text(result: dict[str, Any] | None, key: str) -> str:
    """``Δ (p)``: the difference in means at the column's decimals and its exact permutation p; — without one."""
    if not result or result.get("p") is None:
        return "—"
    diff = result["diff"]
    return ("+" if diff > 0 else "") + fixed(diff, column_of(key, False).decimals) + f" ({p_text(result['p'])})"


def _mean(key: str) -> Callable[[Setting], str]:
    return lambda s: cell_text(s, key, spread=False)[0]


def _delta(comparisons: Sequence[Comparison], key: str) -> Callable[[Setting], str]:
    by_key = {c.setting.key: c for c in comparisons}
    return lambda s: delta_text(by_key[s.key].results.get(key) if s.key in by_key else None, key)


def shared_parts(rows: Sequence[Setting]) -> list[tuple[str, str]]:
    """The label parts (column, ``name=value``) every row has: said once in the caption, not per row."""
    if len(rows) < 2:
        return []
    return [part for part in rows[0].parts if all(part in s.parts for s in rows[1:])]


def _label(shared: Sequence[tuple[str, str]]) -> Callable[[Setting], str]:
    """The setting's label without the ``shared`` parts, with symbols (β=0.2), † when short."""
    def text(s: Setting) -> str:
        label = ", ".join(text for column, text in s.parts if (column, text) not in shared) or "—"
        return symbol_text(label) + (f" {SHORT}" if s.short else "")
    return text


def readme_table(data: GridData, vae: Sequence[Comparison], lm: Sequence[Comparison], every: bool = False) -> str:
    """The table (Markdown) and a one-line caption: method, setting, AU count per seed, KL, MI, Δ MI
    against `vae` with its exact p, the IW-NLL, and rec (images) or PPL, Δ NLL against `lstm-lm`
    and KL per seed (sentences); a Δ column only where a baseline was found. One row per headline
    setting (every setting when the grid declares no headline, or with ``every``)."""
    rows = headlines(data) if data.headline_declared and not every else list(data.settings)
    keys = {s.key for s in rows}
    text = all_text(rows)
    shared = shared_parts(rows)
    columns: list[tuple[str, Callable[[Setting], str]]] = [
        ("method", lambda s: f"`{s.method}`"), ("setting", _label(shared)),
        ("AU count per seed", lambda s: per_seed_text(s, "au_count"))]
    if text:
        columns.append(("KL per seed", lambda s: per_seed_text(s, "kl")))
    columns += [("KL", _mean("kl")), ("MI", _mean("mi"))]
    if any(c.baseline for c in vae if c.setting.key in keys):
        mi = _delta(vae, "mi")  # none for the language model: it has no z
        columns.append((f"Δ MI vs `{BASELINE}` (p)", lambda s: "—" if no_latent(s, "mi") else mi(s)))
    columns.append((column_of("nll", text).name, _mean("nll")))
    if text:
        columns.append((column_of("ppl", text).name, _mean("ppl")))
        if any(c.baseline for c in lm if c.setting.key in keys):
            columns.append((f"Δ NLL vs `{LANGUAGE_MODEL}` (p)", _delta(lm, "nll")))
    else:
        columns.append(("rec", _mean("rec")))
    if len(data.datasets()) > 1:
        columns.insert(0, ("dataset", lambda s: s.dataset))
    table = Table.plain([name for name, _ in columns], [[cell(s) for _, cell in columns] for s in rows],
                        "".join("r" if name not in ("dataset", "method", "setting") else "l" for name, _ in columns))
    seeds = sorted({len(s.ok) for s in rows})
    n = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    notes = (([SHORT_NOTE] if any(s.short for s in rows) else [])
             + invalid_notes(rows, ["au_count", "kl", "mi", "nll", "ppl", "rec"]))
    delta = any(name.startswith("Δ") for name, _ in columns)
    if shared:
        notes.insert(0, "every row: " + symbol_text(", ".join(t for _, t in shared)))
    if any(s.method == LANGUAGE_MODEL for s in rows):
        notes.append(f"`{LANGUAGE_MODEL}` (the decoder without z) has no latent: —")
    caption = (f"Grid `{data.name}`, {n} seed{'' if n == '1' else 's'} per setting: AU count per seed (active "
               f"latent dims), KL, MI and {column_of('nll', text).name} in nats, means over the seeds"
               + ("; Δ: setting mean − baseline mean (p: exact two-sided permutation test over the seeds, not "
                  "corrected for multiple comparisons)" if delta else "")
               + "".join(f"; {note}" for note in notes) + ". Generated by `python -m benchmark report`.")
    return table.markdown() + "\n" + caption + "\n"

