"""Grid-level progress: a bar on a terminal, plain lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

from ..results.record import Record


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class GridProgress:
    """Counts finished runs by status and shows runs done / total, elapsed time and ETA."""

    def __init__(self, total: int, stream: TextIO | None = None, bar: bool | None = None):
        self.stream = stream or sys.stderr
        self.total = total
        self.counts = {"ok": 0, "failed": 0, "diverged": 0}
        self.start = time.monotonic()
        use_bar = self.stream.isatty() if bar is None else bar
        self.bar = tqdm(total=total, file=self.stream, unit="run", dynamic_ncols=True) if use_bar and total else None

    running = 0  # runs started and not finished
    retries = 0

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def started(self) -> None:
        self.running += 1
        self._refresh()

    def retrying(self) -> None:
        self.running -= 1
        self.retries += 1
        self._refresh()

    def dropped(self) -> None:
        """A run started that will not run again (its retry is not run)."""
        self.running = max(0, self.running - 1)
        self._refresh()

    def skip(self) -> None:
        """A run that another process finished or is running: no longer ours to count."""
        self.total -= 1
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def _status(self) -> dict[str, int]:
        status = {k: v for k, v in self.counts.items() if v}
        status.update({k: v for k, v in (("running", self.running), ("retries", self.retries)) if v})
        return status

    def _refresh(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix(self._status(), refresh=True)

    def log(self, line: str) -> None:
        """Print a line without breaking the bar."""
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def finished(self, record: Record) -> None:
        status = record.status
        self.counts[status] = self.counts.get(status, 0) + 1
        self.running = max(0, self.running - 1)
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * max(0, self.total - self.done)
        detail = f" ({record.error.message[:200]})" if record.error else ""
        line = (f"[{self.done}/{self.total}] {status} {record.run_id} {record.label} "
                f"in {record.wall_time_s:.1f}s{detail}")
        if self.bar is not None:
            self.bar.set_postfix(self._status(), refresh=False)
            self.bar.update(1)
            self.log(line)
        else:
            counts = ", ".join(f"{v} {k}" for k, v in self._status().items())
            self.log(f"{line} | {counts} | elapsed {_duration(elapsed)}, ETA {_duration(eta)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
