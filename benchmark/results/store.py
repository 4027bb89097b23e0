"""A grid's results folder: record files written atomically, run locks, checkpoints, the plan.

Layout under ``<results>/<grid>/``::

    plan.json                  every run of the grid as `run` expanded it (run.plan)
    runs/<run_id>.json         one record per run (run.record), and its images <run_id>.<name>.png
    runs.csv, summary.csv      the tables, brought up to date with the records after each one (run.table)
    .table-cache.json          the rows of the tables by record file (name, inode, size, times): a
                               cache, so a new process need not parse every record again
    superseded/                records made by other code, kept when their run is redone
    checkpoints/, models/      resumable checkpoints, kept models (--keep-model)
    locks/                     one lock file per run being run (held by the process running it),
                               plan.lock (held while a command checks and writes the plan)

Every file is created whole or not at all (a temporary file ``.<name>.<pid>@<host>.<random>.tmp``
renamed over it, removed by the next ``run`` once its process is gone), with the user's umask,
so a crash or Ctrl-C never leaves a partial one. A lock file names its holder (pid, host, since).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from ..errors import BenchmarkError
from .plan import PLAN_FILE, Plan
from .record import Record, RecordError, parse_record, utc_now
from .table import IncrementalTables, record_row, records_table, summary_markdown, summary_table, tables_csv

if TYPE_CHECKING:
    from torch import Tensor

HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
TMP_NAME = re.compile(r"\.(\d+)@([A-Za-z0-9-]+)\.[0-9a-f]+\.tmp$")  # see atomic_write
LOCK_WAIT_S = 120.0  # how long a command waits for the plan or tables lock another command holds
# What reading a file that is no (valid) record raises.
UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError)
TABLE_CACHE = ".table-cache.json"  # the rows of the tables by record file (ResultStore.write_table)
CACHE_SAVE_EVERY = 64  # rows parsed since the cache was saved that make write_table save it (or 1/8 of the rows)
FileKey = tuple[int, int, int, int]  # a file's inode, size, mtime and ctime (ns): a record file not changed since


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Create ``path`` whole or not at all: ``write`` fills a temporary file in the same folder
    (a hidden name naming this process: :func:`orphaned`), which is then renamed over ``path``.
    The file gets the user's umask, like any file the user creates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}@{HOST}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def orphaned(path: Path, now: float) -> bool:
    """Whether ``path``, the temporary file of an atomic write, was left by a writer that is gone:
    a process of this host that no longer runs, or (names without a process: older code) a
    file untouched for an hour."""
    match = TMP_NAME.search(path.name)
    if match is None:
        return now - path.stat().st_mtime > 3600
    if match[2] != HOST:
        return False  # another machine's, on a shared disk: cannot tell
    try:
        os.kill(int(match[1]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        pass
    return False


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, flushed to disk."""
    def write(tmp: Path) -> None:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (checkpoints, kept models), flushed to disk.

    torch writes through a Python file, so a failing write (a full disk) raises the
    :class:`OSError` that :func:`storing` names; given a path, torch's own writer would raise a
    RuntimeError without the cause ("unexpected pos ...")."""
    import torch  # not at module level: the report reads the store without torch

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_write(path, write)


class StoreError(BenchmarkError):
    """A file of the results could not be written; the message names it and the fix."""


FIXES = {errno.ENOSPC: "free space on its disk", errno.EDQUOT: "free space within your disk quota",
         errno.EACCES: "make its folder writable", errno.EPERM: "make its folder writable",
         errno.EROFS: "pass --results DIR on a writable disk", errno.EISDIR: "move away the folder in its place",
         errno.ENOTDIR: "move away the file in the way of its folder"}


@contextlib.contextmanager
def storing(path: Path) -> Iterator[None]:
    """Turn an :class:`OSError` while writing ``path`` into a :class:`StoreError` naming it and the fix."""
    try:
        yield
    except OSError as exc:
        raise StoreError(f"cannot write {path} ({exc.strerror or exc}): {FIXES.get(exc.errno, 'fix the cause')}, "
                         "then run the same command again (finished runs are stored)") from exc


class ResultStore:
    """The results of one grid: ``root / grid``."""

    def __init__(self, root: str | Path, grid: str):
        self.dir = Path(root) / grid
        self.runs_dir = self.dir / "runs"
        self._tables: IncrementalTables | None = None  # the tables as of the record files in `_files`
        self._files: dict[str, FileKey | None] = {}  # record file name -> its key when last read
        self._unsaved = 0  # records parsed since the table cache was last saved

    def record_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

    def check_writable(self, run_ids: Sequence[str] = ()) -> None:
        """Raise :class:`BenchmarkError` (one line) unless files can be created in this grid's
        folder (or, while it does not exist yet, in the nearest folder above it) and its subfolders,
        and nothing of another type is where a folder or the files of ``run_ids`` (records,
        checkpoints, locks) or the tables and plan go; creates nothing."""
        folder = self.dir
        while not folder.exists() and folder.parent != folder:
            folder = folder.parent
        folders = [self.dir / name for name in ("runs", "checkpoints", "models", "superseded", "locks")]
        files = [self.dir / name for name in (PLAN_FILE, "runs.csv", "summary.csv", ".table.lock")] + [
            path for run_id in run_ids
            for path in (self.record_path(run_id), self.checkpoint_path(run_id), self.lock_path(run_id))]
        try:
            for path in [folder, self.dir] + folders:
                if path.exists() and not path.is_dir():
                    raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of the folder", str(path))
            for path in files:
                if path.exists() and not path.is_file():
                    raise IsADirectoryError(errno.EISDIR, "not a file", str(path))
            for probe in [folder] + [path for path in folders if path.is_dir()]:
                fd, tmp = tempfile.mkstemp(dir=probe, prefix=".write-check.", suffix=".tmp")
                os.close(fd)
                os.unlink(tmp)
        except OSError as exc:
            raise BenchmarkError(f"results folder {self.dir} cannot be written ({exc.strerror or exc}: "
                                 f"{exc.filename or folder}); move away what is in the way, or pass --results DIR "
                                 "with a folder you can write") from None

    def remove_orphans(self) -> int:
        """Delete the temporary files that writers which are gone left in this grid's folders
        (:func:`orphaned`); returns how many."""
        now, removed = time.time(), 0
        for folder in (self.dir, self.runs_dir, self.superseded_dir(), self.dir / "checkpoints", self.dir / "models"):
            for path in folder.glob(".*.tmp"):
                try:
                    if orphaned(path, now):
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def write(self, record: Record, images: dict[str, Tensor] | None = None) -> Path:
        """Write the image grids [N, C, H, W] (``<run_id>.<name>.png``, listed in ``record.artifacts``),
        then the record: a record on disk always has its images. Raises :class:`StoreError`."""
        from ..ml.images import save_image_grid  # torch: only where images are written

        record.artifacts = {}
        for name, batch in sorted((images or {}).items()):
            filename = f"{record.run_id}.{name}.png"
            with storing(self.runs_dir / filename):
                atomic_write(self.runs_dir / filename, lambda tmp: save_image_grid(batch.detach().cpu(), tmp, nrow=8))
            record.artifacts[name] = filename
        path = self.record_path(record.run_id)
        with storing(path):
            atomic_write_text(path, record.to_json())
        return path

    def read_file(self, path: Path) -> Record:
        """The record in file ``path``; raises one of :data:`UNREADABLE` for a file that is not a
        readable record or whose run id is not its file name."""
        record = parse_record(path.read_text(), str(path))
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
                unreadable.append((path.name, exc.problem if isinstance(exc, RecordError) else f"{type(exc).__name__}: {exc}"))
        return records, unreadable

    def plan_path(self) -> Path:
        return self.dir / PLAN_FILE

    def write_plan(self, plan: Plan) -> Path:
        atomic_write_text(self.plan_path(), plan.to_json())
        return self.plan_path()

    def claim(self, plan: Callable[[Plan | None], Plan]) -> Plan:
        """Write the plan ``plan(the plan there now)`` returns (it raises to refuse the folder), with no
        other ``run`` reading or writing the plan in between; returns it."""
        with RunLock.wait(self.dir / "locks" / "plan.lock", f"the plan of {self.dir}"), storing(self.plan_path()):
            claimed = plan(self.read_plan())
            self.write_plan(claimed)
        return claimed

    def read_plan(self) -> Plan | None:
        """The plan ``run`` wrote, or None (results from before plans were written, or unreadable)."""
        try:
            return Plan.from_json(self.plan_path().read_text(), str(self.plan_path()))
        except UNREADABLE:
            return None

    def checkpoint_path(self, run_id: str) -> Path:
        return self.dir / "checkpoints" / f"{run_id}.pt"

    def remove_checkpoint(self, run_id: str) -> None:
        """Delete a run's checkpoint and any temporary file a killed writer left beside it."""
        path = self.checkpoint_path(run_id)
        for stale in [*path.parent.glob(f".{path.name}.*.tmp"), path]:
            with contextlib.suppress(OSError):  # a checkpoint left behind is only resumed from
                stale.unlink()

    def model_path(self, run_id: str) -> Path:
        return self.dir / "models" / f"{run_id}.pt"

    def lock_path(self, run_id: str) -> Path:
        return self.dir / "locks" / f"{run_id}.lock"

    def try_lock(self, run_id: str) -> "RunLock | None":
        """Claim ``run_id`` for this process, or None when another process holds it. The OS
        releases the claim when the process dies, however it dies."""
        return RunLock.acquire(self.lock_path(run_id))

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

    def write_table(self, save_cache: bool = False) -> Path:
        """Bring ``runs.csv`` (one row per run) and ``summary.csv`` (mean, std and count over seeds
        per setting) up to date with the records, under a lock shared by concurrent ``run``
        commands: byte for byte what :meth:`rebuild_table` writes, at a cost that does not grow
        with the records (see :class:`benchmark.results.table.IncrementalTables`). Only the record
        files changed since the last call (by name, inode, size, mtime and ctime; all of them in a
        new process, but for those in ``.table-cache.json``) are parsed, so a record added,
        removed or edited by hand or by another process is picked up; both files are written
        whole every time, so whatever happened before, they then match the records. Saves the
        cache when ``save_cache`` (or when many records were parsed since it was saved). Raises
        :class:`StoreError`."""
        with RunLock.wait(self.dir / ".table.lock", f"the tables of {self.dir}"):
            try:
                runs, summary = self._update_tables()
            except BaseException:
                self._tables, self._files = None, {}  # the next call starts afresh
                raise
            self._write_tables(runs, summary)
            if self._unsaved and (save_cache or self._unsaved >= max(CACHE_SAVE_EVERY, len(self._files) // 8)):
                self._save_table_cache()
        return self.dir / "runs.csv"

    def rebuild_table(self) -> Path:
        """Rebuild ``runs.csv`` and ``summary.csv`` from every record, each parsed afresh (the
        reference :meth:`write_table` matches; its cost grows with the records). Raises
        :class:`StoreError`."""
        with RunLock.wait(self.dir / ".table.lock", f"the tables of {self.dir}"):
            self._write_tables(*tables_csv(self.records()))
        return self.dir / "runs.csv"

    def _write_tables(self, runs: str, summary: str) -> None:
        for name, text in (("summary.csv", summary), ("runs.csv", runs)):
            with storing(self.dir / name):
                atomic_write_text(self.dir / name, text)

    def _update_tables(self) -> tuple[str, str]:
        """Read the record files changed since the last call; the tables' text."""
        cache: dict[str, tuple[FileKey, dict[str, Any] | None]] = {}
        if self._tables is None:
            self._tables, self._files, self._unsaved = IncrementalTables(), {}, 0
            cache = self._load_table_cache()
        listing = self._listing()
        changes: dict[str, dict[str, Any] | None] = {}
        for name in [name for name in self._files if name not in listing]:
            del self._files[name]
            changes[Path(name).stem] = None
        for name, key in listing.items():
            if key is not None and self._files.get(name) == key:
                continue
            if key is not None and name in cache and cache[name][0] == key:
                row = cache[name][1]
            else:
                key, row = self._read_row(name)
                self._unsaved += 1
            self._files[name] = key
            changes[Path(name).stem] = row
        return self._tables.update(changes)

    def _listing(self) -> dict[str, FileKey | None]:
        """The files of ``runs/`` that :meth:`scan` reads (``*.json``) and their keys (None:
        cannot be stat'ed)."""
        found: dict[str, FileKey | None] = {}
        try:
            entries = os.scandir(self.runs_dir)
        except OSError:  # no runs/ yet (or none that can be listed: no records, as for scan)
            return found
        with entries:
            for entry in entries:
                if entry.name.endswith(".json"):
                    try:
                        found[entry.name] = _file_key(entry.stat())
                    except OSError:
                        found[entry.name] = None
        return found

    def _read_row(self, name: str) -> tuple[FileKey | None, dict[str, Any] | None]:
        """Record file ``name``'s key (of the file read, so a file replaced meanwhile is read
        again next time) and its row of ``runs.csv`` (None: no readable record, see :meth:`read_file`)."""
        path = self.runs_dir / name
        try:
            with open(path) as handle:
                key = _file_key(os.fstat(handle.fileno()))
                text = handle.read()
        except OSError:
            return None, None
        try:
            record = parse_record(text, str(path))
            if record.run_id != path.stem:
                raise ValueError(f"run_id {record.run_id!r} does not match the file name")
        except UNREADABLE:
            return key, None
        return key, record_row(record)

    def _load_table_cache(self) -> dict[str, tuple[FileKey, dict[str, Any] | None]]:
        """The rows saved in ``.table-cache.json`` by the code of this version (empty: none, or
        unreadable); checked against each file's key before use."""
        try:
            saved = json.loads((self.dir / TABLE_CACHE).read_text())
            if saved.get("code") != _table_code():
                return {}
            rows = {}
            for name, (key, row) in saved["files"].items():
                if isinstance(key, list) and len(key) == 4 and all(type(k) is int for k in key) and (
                        row is None or isinstance(row, dict)):
                    rows[name] = (tuple(key), row)
            return rows
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}

    def _save_table_cache(self) -> None:
        """Save the rows of the tables by record file to ``.table-cache.json`` (a cache: a failure
        to write it is ignored)."""
        assert self._tables is not None
        files = {name: [list(key), self._tables.rows.get(Path(name).stem)]
                 for name, key in self._files.items() if key is not None}
        with contextlib.suppress(OSError, ValueError):
            atomic_write_text(self.dir / TABLE_CACHE, json.dumps({"code": _table_code(), "files": files}))
            self._unsaved = 0

    def summary_markdown(self) -> str:
        """The summary as a Markdown table of the settings that vary (empty without ok runs)."""
        return summary_markdown(summary_table(records_table(self.records())))


def _file_key(stat: os.stat_result) -> FileKey:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


_TABLE_CODE: list[str] = []


def _table_code() -> str:
    """A digest of the code that turns a record file into a row (this module, run.record and
    run.table): a table cache saved by other code is not used."""
    if not _TABLE_CODE:
        from . import record, table

        digest = hashlib.sha256()
        for module in (sys.modules[__name__], record, table):
            digest.update(Path(module.__file__ or "").read_bytes())
        _TABLE_CODE.append(digest.hexdigest()[:16])
    return _TABLE_CODE[0]


class RunLock:
    """An exclusive ``flock`` on a lock file, held until :meth:`release` or process exit; the
    file names its holder (pid, host, since when) for whoever finds it held."""

    def __init__(self, handle: Any):
        self._handle = handle

    @classmethod
    def acquire(cls, path: Path) -> "RunLock | None":
        """The lock of ``path``, or None when another process holds it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        handle.truncate(0)
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}) + "\n")
        handle.flush()
        return cls(handle)

    @classmethod
    def wait(cls, path: Path, what: str, timeout: float | None = None,
             log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> "RunLock":
        """The lock of ``path`` (guarding ``what``), waiting up to ``timeout`` seconds (default
        :data:`LOCK_WAIT_S`) for another process to release it; a :class:`BenchmarkError` then."""
        timeout = LOCK_WAIT_S if timeout is None else timeout
        lock = cls.acquire(path)
        if lock is None:
            log(f"waiting up to {timeout:.0f} s for {what}, held by {lock_holder(path)} ({path})")
        deadline = time.monotonic() + timeout
        while lock is None:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{what} is still held after {timeout:.0f} s by {lock_holder(path)} ({path}): "
                                     "let that command finish (or stop it), then run this one again")
            time.sleep(0.1)
            lock = cls.acquire(path)
        return lock

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(path: Path) -> str:
    """Who holds lock file ``path``, as its holder wrote it: ``pid N on HOST since TIME``."""
    try:
        holder = json.loads(path.read_text())
        return f"pid {holder['pid']} on {holder['host']} since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
