"""The bench's ``tables`` section: what bringing ``runs.csv`` and ``summary.csv`` up to date
costs after a finished run, as a results folder grows to ``table_records`` records.

Records are copies of real ones (``results/ptb-quick/runs/*.json``, cycled) with new run ids,
seeds 0-4 per setting (a setting: the copied record's, its learning rate scaled per five rounds
of copies) and perturbed metrics, written one after another into a temporary grid folder. After
each, ``ResultStore.write_table`` (incremental, the one store object a ``run`` keeps) brings the
tables up to date. At each of ``table_points`` records, the full rebuild that ``run`` did before
(``ResultStore.rebuild_table``: every record parsed, both tables rebuilt; the reference
``write_table`` matches byte for byte) and ``write_table`` after the last record is rewritten
(a run whose record is replaced: its row and its setting recomputed) are timed in turn,
``repeats`` times after a warm-up; ``ratio`` is the median of the paired ratios rebuild /
incremental. Both write both files (fsync'ed) under the tables' lock, like ``run``. Also: every
update of the sequence (its total, against the full rebuilds it replaces, estimated from the
rebuild's cost per record), and the first update of a new process with and without the table
cache.
"""

from __future__ import annotations

import copy
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ...errors import BenchmarkError
from ...results.store import TABLE_CACHE, ResultStore, atomic_write_text
from .common import Settings, compare, median, timed

TEMPLATES = Path(__file__).resolve().parents[3] / "results" / "ptb-quick" / "runs"


def template_records(folder: Path = TEMPLATES) -> list[dict[str, Any]]:
    """The records to copy: every readable record of ``folder``, in file name order."""
    templates = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "config" in data:
            templates.append(data)
    if not templates:
        raise BenchmarkError(f"the tables section copies real records, and {folder} holds none")
    return templates


def synthetic_record(templates: list[dict[str, Any]], k: int, rng: random.Random) -> dict[str, Any]:
    """The ``k``-th record (0-based): a copy of template ``k % T`` with a new run id, seeds 0-4 in
    turn, a learning rate of its own per 5 T records (so a setting has 5 seeds) and metrics
    perturbed by up to 1%."""
    rounds, template = divmod(k, len(templates))
    data = copy.deepcopy(templates[template])
    data["run_id"] = f"{rng.getrandbits(64):016x}"
    data["config"]["seed"] = rounds % 5
    data["config"]["train"]["lr"] = data["config"]["train"].get("lr", 1e-3) * (1 + (rounds // 5) * 1e-4)
    for name, value in (data.get("metrics") or {}).items():
        if isinstance(value, float):
            data["metrics"][name] = value * (1 + 0.01 * rng.random())
    return data


def _write(store: ResultStore, data: dict[str, Any]) -> None:
    atomic_write_text(store.record_path(data["run_id"]), json.dumps(data, indent=1, sort_keys=True) + "\n")


def _timed(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def bench_tables(settings: Settings) -> dict[str, Any]:
    """Milliseconds per table update, full rebuild against incremental, at each of ``table_points``."""
    templates = template_records()
    total = settings.table_records
    points = sorted({p for p in settings.table_points if p <= total} | {total})
    rng = random.Random(0)
    out: dict[str, Any] = {"records": total, "templates": len(templates), "template_folder": str(TEMPLATES),
                           "repeats": settings.repeats, "points": {}}
    with tempfile.TemporaryDirectory(prefix="bench-tables.") as folder:
        store = ResultStore(folder, "bench")
        updates: list[float] = []
        rebuilds: list[tuple[int, float]] = []  # (records, seconds of a rebuild)
        last: dict[str, Any] = {}
        for k in range(1, total + 1):
            last = synthetic_record(templates, k - 1, rng)
            _write(store, last)
            updates.append(_timed(store.write_table))
            if k not in points:
                continue
            full, incremental = [], []
            for _ in range(settings.repeats + 1):  # the first of each: a warm-up
                full.append(_timed(store.rebuild_table))
                _write(store, last)  # the run's record replaced: a new file
                incremental.append(_timed(store.write_table))
            out["points"][str(k)] = {
                "rebuild_ms": median(timed(full)) * 1e3, "incremental_ms": median(timed(incremental)) * 1e3,
                "rebuild_vs_incremental": compare(incremental, full),
                "added_ms": median(updates[-min(5, k):]) * 1e3,  # the updates after the last records added
                "rebuild_s": timed(full), "incremental_s": timed(incremental)}
            rebuilds.append((k, median(timed(full))))
        fixed, per_record = _line_fit(rebuilds)
        out["sequence"] = {"updates": len(updates), "incremental_total_s": sum(updates),
                           "incremental_max_ms": max(updates) * 1e3,
                           "rebuild_fixed_ms": fixed * 1e3, "rebuild_ms_per_record": per_record * 1e3,
                           "rebuild_total_s_estimated": fixed * total + per_record * total * (total + 1) / 2}
        store.write_table(save_cache=True)  # as at the end of a `run`
        incremental = _tables(store)
        store.rebuild_table()
        out["tables_match"] = incremental == _tables(store)
        out["new_process_ms"] = {"with_cache": _timed(ResultStore(folder, "bench").write_table) * 1e3}
        (store.dir / TABLE_CACHE).unlink()
        out["new_process_ms"]["without_cache"] = _timed(ResultStore(folder, "bench").write_table) * 1e3
    return out


def _line_fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares ``seconds = fixed + per_record * records`` (through the origin from one point)."""
    if len(points) < 2:
        return 0.0, points[0][1] / points[0][0]
    n, x, y = len(points), [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    slope = sum((a - mx) * (b - my) for a, b in points) / sum((a - mx) ** 2 for a in x)
    return my - slope * mx, slope


def _tables(store: ResultStore) -> tuple[bytes, bytes]:
    return (store.dir / "runs.csv").read_bytes(), (store.dir / "summary.csv").read_bytes()


def format_tables(section: dict[str, Any]) -> list[str]:
    """The table lines of the tables section."""
    lines = ["", f"tables: one update of runs.csv + summary.csv after a finished run, as the folder grows to "
                 f"{section['records']} records (copies of {section['templates']} real ones); rebuild = every record "
                 f"parsed (before), incremental = write_table (now); median of {section['repeats']}",
             f"  {'records':>8} {'rebuild ms':>11} {'incremental ms':>15} {'ratio':>8} {'after an added record ms':>25}"]
    for n, p in section["points"].items():
        lines.append(f"  {n:>8} {p['rebuild_ms']:11.1f} {p['incremental_ms']:15.2f} "
                     f"{p['rebuild_vs_incremental']['ratio']:7.0f}x {p['added_ms']:25.2f}")
    s = section["sequence"]
    lines.append(f"  all {s['updates']} updates from empty: {s['incremental_total_s']:.1f} s (the longest "
                 f"{s['incremental_max_ms']:.0f} ms); rebuilding instead: about {s['rebuild_total_s_estimated']:.0f} s "
                 f"(a rebuild: {s['rebuild_fixed_ms']:.0f} ms + {s['rebuild_ms_per_record']:.3f} ms per record, fitted)")
    c = section["new_process_ms"]
    lines.append(f"  a new process's first update: {c['with_cache']:.0f} ms with the table cache, "
                 f"{c['without_cache']:.0f} ms without; tables byte for byte the rebuild's: "
                 f"{'yes' if section['tables_match'] else 'NO'}")
    return lines
