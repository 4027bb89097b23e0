"""A grid's results folder: record files written atomically, run locks, checkpoints, the plan.

Layout under ``<results>/<grid>/``::

    plan.json                  every run of the grid as `run` expanded it (run.plan)
    runs/<run_id>.json         one record per run (run.record), and its images <run_id>.<name>.png
    runs.csv, summary.csv      the tables, rebuilt from the records after each one (run.table)
    superseded/                records made by other code, kept when their run is redone
    checkpoints/, models/      resumable checkpoints, kept models (--keep-model)
    locks/                     one lock file per run being run (held by the process running it)

Every file is created whole or not at all (a temporary file renamed over it), so a crash or
Ctrl-C never leaves a partial one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import BenchmarkError
from .plan import PLAN_FILE, Plan
from .record import Record, parse_record
from .table import records_table, summary_markdown, summary_table

if TYPE_CHECKING:
    from torch import Tensor

# What reading a file that is no (valid) record raises.
UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Create ``path`` whole or not at all: ``write`` fills a temporary file in the same folder
    (a hidden name), which is then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, flushed to disk."""
    def write(tmp: Path) -> None:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (checkpoints, kept models)."""
    import torch  # not at module level: the report reads the store without torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


class ResultStore:
    """The results of one grid: ``root / grid``."""

    def __init__(self, root: str | Path, grid: str):
        self.dir = Path(root) / grid
        self.runs_dir = self.dir / "runs"

    def record_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

    def check_writable(self) -> None:
        """Raise :class:`BenchmarkError` (one line) unless files can be created in this grid's
        folder (or, while it does not exist yet, in the nearest folder above it); creates nothing."""
        folder = self.dir
        while not folder.exists() and folder.parent != folder:
            folder = folder.parent
        probes = [folder] + ([self.runs_dir] if self.runs_dir.is_dir() else [])
        try:
            for probe in probes:
                if not probe.is_dir():
                    raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of the folder", str(probe))
                fd, tmp = tempfile.mkstemp(dir=probe, prefix=".write-check.", suffix=".tmp")
                os.close(fd)
                os.unlink(tmp)
        except OSError as exc:
            raise BenchmarkError(f"results folder {self.dir} cannot be written ({exc.strerror or exc}: "
                                 f"{exc.filename or folder}); pass --results DIR with a folder you can write") from None

    def write(self, record: Record, images: dict[str, Tensor] | None = None) -> Path:
        """Write the image grids [N, C, H, W] (``<run_id>.<name>.png``, listed in ``record.artifacts``),
        then the record: a record on disk always has its images."""
        from ..ml.images import save_image_grid  # torch: only where images are written

        record.artifacts = {}
        for name, batch in sorted((images or {}).items()):
            filename = f"{record.run_id}.{name}.png"
            atomic_write(self.runs_dir / filename, lambda tmp: save_image_grid(batch.detach().cpu(), tmp, nrow=8))
            record.artifacts[name] = filename
        path = self.record_path(record.run_id)
        atomic_write_text(path, record.to_json())
        return path

    def read_file(self, path: Path) -> Record:
        """The record in file ``path``; raises one of :data:`UNREADABLE` for a file that is not a
        readable record or whose run id is not its file name."""
        record = parse_record(path.read_text())
        if record.run_id != path.stem:
            raise ValueError(f"run_id {record.run_id!r} does not match the file name")
        return record

    def scan(self) -> tuple[list[Record], list[tuple[str, str]]]:
        """Every record under ``runs/`` (by file name), and the files there that are none: (file
        name, why)."""
        records, unreadable = [], []
        for path in sorted(self.runs_dir.glob("*.json")):
            try:
                records.append(self.read_file(path))
            except UNREADABLE as exc:
                unreadable.append((path.name, f"{type(exc).__name__}: {exc}"))
        return records, unreadable

    def plan_path(self) -> Path:
        return self.dir / PLAN_FILE

    def write_plan(self, plan: Plan) -> Path:
        atomic_write_text(self.plan_path(), plan.to_json())
        return self.plan_path()

    def read_plan(self) -> Plan | None:
        """The plan ``run`` wrote, or None (results from before plans were written, or unreadable)."""
        try:
            return Plan.from_json(self.plan_path().read_text())
        except UNREADABLE:
            return None

    def checkpoint_path(self, run_id: str) -> Path:
        return self.dir / "checkpoints" / f"{run_id}.pt"

    def remove_checkpoint(self, run_id: str) -> None:
        """Delete a run's checkpoint and any temporary file a killed writer left beside it."""
        path = self.checkpoint_path(run_id)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    def model_path(self, run_id: str) -> Path:
        return self.dir / "models" / f"{run_id}.pt"

    def try_lock(self, run_id: str) -> "RunLock | None":
        """Claim ``run_id`` for this process, or None when another process holds it. The OS
        releases the claim when the process dies, however it dies."""
        return RunLock.acquire(self.dir / "locks" / f"{run_id}.lock")

    def read(self, run_id: str) -> Record | None:
        """Run ``run_id``'s record, or None: none yet, or unreadable (e.g. hand-edited; treated as
        missing, so the run is redone)."""
        try:
            return self.read_file(self.record_path(run_id))
        except UNREADABLE:
            return None

    def superseded_dir(self) -> Path:
        return self.dir / "superseded"

    def superseded_run_ids(self) -> set[str]:
        """Run ids with a record in ``superseded/`` (named ``<run_id>.<code key>.json``)."""
        return {path.name.split(".")[0] for path in self.superseded_dir().glob("*.json")}

    def supersede(self, run_id: str) -> Path | None:
        """Move run ``run_id``'s record and its images out of ``runs/`` into ``superseded/``, named
        by the code version that made them (``<run_id>.<code key>.json``); never deletes. Returns
        the moved record's path (None when there is no record)."""
        record = self.read(run_id)
        if record is None:
            return None
        key = (record.code or {}).get("key") or "unversioned"
        folder = self.superseded_dir()
        folder.mkdir(parents=True, exist_ok=True)
        artifacts = {}
        for name, filename in sorted((record.artifacts or {}).items()):
            source = self.runs_dir / filename
            if source.exists():
                artifacts[name] = f"{run_id}.{key}.{name}{source.suffix}"
                os.replace(source, folder / artifacts[name])
        record.artifacts = artifacts
        path = folder / f"{run_id}.{key}.json"
        atomic_write_text(path, record.to_json())
        self.record_path(run_id).unlink()
        return path

    def records(self) -> list[Record]:
        """Every readable record (see :meth:`scan`)."""
        return self.scan()[0]

    def write_table(self) -> Path:
        """Rebuild ``runs.csv`` (one row per run) and ``summary.csv`` (mean, std and count over
        seeds per setting) from every record, under a lock shared by concurrent ``run`` commands."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".table.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            table = records_table(self.records())
            atomic_write_text(self.dir / "summary.csv", summary_table(table).to_csv(index=False, float_format="%.6g"))
            path = self.dir / "runs.csv"
            atomic_write_text(path, table.to_csv(index=False, float_format="%.6g"))
        return path

    def summary_markdown(self) -> str:
        """The summary as a Markdown table of the settings that vary (empty without ok runs)."""
        return summary_markdown(summary_table(records_table(self.records())))


class RunLock:
    """An exclusive ``flock`` on a lock file, held until :meth:`release` or process exit."""

    def __init__(self, handle: Any):
        self._handle = handle

    @classmethod
    def acquire(cls, path: Path) -> "RunLock | None":
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return cls(handle)

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
