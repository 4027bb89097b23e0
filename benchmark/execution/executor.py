"""Execute a prepared job's runs and store each record as it arrives.

Backends: in this process (one worker, one device), local worker processes (joblib's loky;
each pinned to a GPU slot or given its share of the CPU threads) or Ray tasks (local instance
or a cluster; the driver writes every record itself, so workers need no shared filesystem).
A submission is a pack: up to ``--pack`` runs that differ only in their seed (and their
method's pack scalars), trained as one
stacked model (:mod:`benchmark.ml.pack`; a single run is a pack of one). Every run is claimed
with a lock first, so concurrent ``run`` commands never run it twice; a run another process
finished meanwhile is skipped; failed runs are retried, one at a time. What to run (and the
device) is decided once beforehand, by :mod:`benchmark.planning.prepare`.
"""

from __future__ import annotations

import collections
import hashlib
import os
import signal
import threading
import traceback
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch

from ..config import RunConfig
from ..discovery import METHODS, PLUGIN_PATH_ENV, REPORTER_ENV
from ..errors import BenchmarkError
from ..ml.pack import pack_key, pack_problem
from .checkpoint import checkpoint_damage
from .checkpoint_every import CheckpointEvery
from .memory import auto_pack_size, pack_budget
from .progress import GridProgress
from ..results.provenance import PROJECT_ROOT, is_checkout
from ..results.record import RunKeys, run_state
from .runner import RunResult, execute_pack, failed_result
from ..results.store import ResultStore, RunLock, StoreError, atomic_torch_save, lock_holder, storing


@dataclass(frozen=True)
class RunOptions:
    """How to run (never part of a run's identity)."""

    device: str = "auto"
    data_root: str | None = None
    download: bool = False
    workers: int = 1  # parallel runs (on GPUs: default GPUs x runs_per_gpu)
    executor: Literal["local", "ray"] = "local"
    address: str | None = None  # Ray cluster address; None starts a local instance
    runs_per_gpu: int = 1
    retries: int = 1  # extra attempts for a failed run (diverged runs are not retried)
    checkpoint_every: CheckpointEvery | int = CheckpointEvery(minutes=10)  # or epochs between checkpoints (0: none)
    keep_model: bool = False
    threads: int = 0  # CPU threads per run (0: the cores shared between the workers)
    pack: int | Literal["auto"] = 1  # most runs trained together as one stacked model (auto: by GPU memory)
    gpu_memory: float | None = None  # GiB: --pack auto sizes packs for a GPU of this size, not the free memory found

    def __post_init__(self) -> None:
        if self.address and self.executor != "ray":
            raise BenchmarkError("--address is for --executor ray")


@dataclass
class Job:
    """The runs of one command on one grid's results, with what is known of them beforehand."""

    name: str  # the grid, and its folder under the results
    store: ResultStore
    runs: list[RunConfig]  # every run of the command, in grid order
    run_ids: list[str]  # the id of each of runs (computed once)
    todo: list[RunConfig]  # the runs to execute (no ok record of the current code, or all with force)
    code_keys: dict[str, RunKeys]  # run id -> the keys of its current code, alone and packed
    force: bool = False  # rerun runs that have an ok record
    keep_stale: bool = False  # count ok records made by other code as done


@dataclass
class GridSummary:
    total: int
    skipped: int
    locked: int = 0  # runs another process was running
    finished_elsewhere: int = 0  # runs another process finished after this one planned them
    not_run: int = 0  # runs left unattempted after a record could not be stored
    error: str | None = None  # why storing failed (names the file and the fix)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Slot:
    """Where one run executes: a device and the CPU threads it may use."""

    device: str
    threads: int


def local_slots(options: RunOptions, device: torch.device) -> list[Slot]:
    """One slot per parallel run on ``device``: GPU slots (``runs_per_gpu`` per visible GPU) or
    CPU slots sharing the cores."""
    if device.type == "cuda":
        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if device.index is None else [str(device)]
        slots = [Slot(gpu, 1) for _ in range(options.runs_per_gpu) for gpu in gpus]
        return slots[:options.workers] if options.workers > 1 else slots
    cores = os.cpu_count() or 1
    return [Slot("cpu", options.threads or max(1, cores // options.workers))] * options.workers


def make_packs(runs: Sequence[RunConfig], size: int | Callable[[RunConfig], int],
               log: Callable[[str], None] = lambda line: None) -> list[list[RunConfig]]:
    """``runs`` grouped into packs of at most ``size`` runs (a count, or each run's kind's count,
    :func:`benchmark.execution.memory.auto_pack_size`) that differ only in their seed and their
    method's ``pack_scalars`` (:func:`benchmark.ml.pack.pack_key`), in the order of each pack's
    first run; runs of a method that cannot pack are packs of one (``log`` says why, once per
    method)."""
    size_of = size if callable(size) else lambda config: size
    packs: list[list[RunConfig]] = []
    open_packs: dict[str, list[RunConfig]] = {}
    told: set[tuple[str, str]] = set()
    for config in runs:
        size = size_of(config)
        problem = pack_problem(METHODS[config.method], config.model) if size > 1 else "no packing"
        if problem is not None:
            if size > 1 and (config.method, config.model.arch) not in told:
                told.add((config.method, config.model.arch))
                log(f"{config.method} runs alone: {problem}")
            packs.append([config])
            continue
        key = pack_key(config, METHODS[config.method].pack_scalars)
        pack = open_packs.get(key)
        if pack is None or len(pack) >= size:
            pack = open_packs[key] = []
            packs.append(pack)
        pack.append(config)
    return packs


def describe_packs(packs: Sequence[Sequence[RunConfig]]) -> str:
    """``packs`` in one line: how many, of which sizes (largest first)."""
    sizes = collections.Counter(len(pack) for pack in packs)
    return f"{len(packs)} packs (" + ", ".join(f"{n} of {size}" for size, n in sorted(sizes.items(), reverse=True)) + ")"


def pack_name(configs: Sequence[RunConfig]) -> str:
    """The name of a pack's checkpoint: its run id when alone, else a digest of its run ids."""
    if len(configs) == 1:
        return configs[0].run_id
    return "pack-" + hashlib.sha256(",".join(c.run_id for c in configs).encode()).hexdigest()[:16]


def _execute(configs: list[RunConfig], options: RunOptions, slot: Slot, checkpoint: str | None,
             log: Callable[[str], None]) -> list[RunResult]:
    """Train the pack ``configs`` on ``slot`` with ``options``' data, checkpoint and model settings."""
    return execute_pack(configs, device=slot.device, data_root=options.data_root, download=options.download,
                        log=log, checkpoint=Path(checkpoint) if checkpoint else None,
                        checkpoint_every=options.checkpoint_every, keep_model=options.keep_model)


def _run_in_worker(configs: list[RunConfig], options: RunOptions, slot: Slot, checkpoint: str | None) -> list[RunResult]:
    """Entry point of a worker process (loky or Ray): pin the device and threads, then run."""
    torch.set_num_threads(slot.threads)
    if slot.device.startswith("cuda:"):
        torch.cuda.set_device(slot.device)
    return _execute(configs, options, slot, checkpoint, lambda line: print(line, flush=True))


class InProcessBackend:
    """Runs each submission at once, in this process (Ctrl-C interrupts it directly)."""

    def __init__(self, options: RunOptions, log: Callable[[str], None]):
        self.options, self.log = options, log
        self.slots = [Slot(options.device, options.threads)]
        if options.threads:
            torch.set_num_threads(options.threads)

    def submit(self, configs: list[RunConfig], slot: Slot, checkpoint: str | None) -> Future:
        future: Future = Future()
        future.set_result(_execute(configs, self.options, slot, checkpoint, self.log))
        return future

    def close(self, abort: bool = False) -> None:
        pass


class LokyBackend:
    """Local worker processes; a worker that dies fails only its own run."""

    def __init__(self, options: RunOptions, device: torch.device, runs: int):
        """At most one worker process per run of ``runs`` (``--workers 64`` for 3 runs starts 3)."""
        self.options, self.slots = options, local_slots(options, device)[:max(1, runs)]
        self.executor = None

    def submit(self, configs: list[RunConfig], slot: Slot, checkpoint: str | None) -> Future:
        from joblib.externals.loky import get_reusable_executor

        self.executor = get_reusable_executor(max_workers=len(self.slots))  # a fresh one if a worker died
        return self.executor.submit(_run_in_worker, configs, self.options, slot, checkpoint)

    def close(self, abort: bool = False) -> None:
        """``abort`` (runs still in flight: interrupted): stop the worker processes now."""
        if abort and self.executor is not None:
            self.executor.shutdown(wait=True, kill_workers=True)


RAY_CANCEL_GRACE_S = 10.0  # how long cancelled Ray tasks get to stop before their worker processes are killed


class RayBackend:
    """Each pack is a Ray task with its resource request; results come back to the driver. An
    interrupted command cancels its tasks still in flight (a cluster would go on running them)."""

    def __init__(self, options: RunOptions, log: Callable[[str], None] = print):
        try:
            import ray
        except ImportError:
            raise BenchmarkError("--executor ray needs Ray: .venv/bin/pip install ray==2.60.0 "
                                 "(on every machine of the cluster)") from None
        self.ray, self.options, self.log = ray, options, log
        self.submitted: dict[Future, object] = {}  # each task's future -> its ObjectRef
        # From a checkout the workers get its code; an installed package must be installed on every
        # worker as well (site-packages is no folder to ship).
        runtime_env = {"working_dir": str(PROJECT_ROOT),
                       "excludes": ["/.venv/", "/results/", "/reports/", "/.git/", "/data/", "/device-data/", "*.pt"]
                       } if is_checkout() else {}
        # the plugins, and the process that names slow plugin imports (so the workers do not)
        runtime_env["env_vars"] = {name: os.environ[name] for name in (PLUGIN_PATH_ENV, REPORTER_ENV)
                                   if os.environ.get(name)}
        init = dict(address=options.address, runtime_env=runtime_env, ignore_reinit_error=True,
                    log_to_driver=True, include_dashboard=False)
        if options.address is None:
            init["num_cpus"] = options.workers
        # ray.init makes SIGTERM exit at once (sys.exit); the command's own handler (SIGTERM is
        # Ctrl-C: the tasks in flight are cancelled, exit 130) stays
        sigterm = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        try:
            ray.init(**init)
        finally:
            if sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        gpu = options.device == "cuda" or (options.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
        resources = {"num_gpus": 1 / options.runs_per_gpu, "num_cpus": 1} if gpu else {"num_cpus": 1}
        self.device = "cuda" if gpu else "cpu"
        self.task = ray.remote(max_retries=0, **resources)(_run_in_worker)
        slots = int(ray.cluster_resources().get("GPU", 0) * options.runs_per_gpu) if gpu else options.workers
        self.slots = [Slot(self.device, 1)] * max(1, slots)

    def submit(self, configs: list[RunConfig], slot: Slot, checkpoint: str | None) -> Future:
        ref = self.task.remote(configs, self.options, slot, checkpoint)
        future = ref.future()
        self.submitted = {f: r for f, r in self.submitted.items() if not f.done()}
        self.submitted[future] = ref
        return future

    def close(self, abort: bool = False) -> None:
        """Stop the local instance (its tasks with it); on a cluster at ``--address``, which stays
        up, ``abort`` (interrupted) cancels the tasks in flight."""
        try:
            if abort and self.options.address is not None:
                self.cancel([ref for future, ref in self.submitted.items() if not future.done()])
        finally:
            if self.options.address is None:
                self.ray.shutdown()

    def cancel(self, refs: list) -> None:
        """Cancel the tasks ``refs``: a KeyboardInterrupt in each (it stops at its next line of
        Python, leaving no record), then, for those not stopped within
        :data:`RAY_CANCEL_GRACE_S`, their worker processes killed; one line says so."""
        if not refs:
            return
        for ref in refs:
            self.ray.cancel(ref)
        _, left = self.ray.wait(refs, num_returns=len(refs), timeout=RAY_CANCEL_GRACE_S, fetch_local=False)
        for ref in left:
            self.ray.cancel(ref, force=True)
        forced = (f"; {len(left)} not stopped within {RAY_CANCEL_GRACE_S:g} s had their worker processes killed"
                  if left else "")
        self.log(f"cancelled {len(refs)} Ray task(s) still running on the cluster at {self.options.address}{forced}")


def _backend(options: RunOptions, device: torch.device, log: Callable[[str], None], runs: int):
    if options.executor == "ray":
        return RayBackend(options, log)
    if options.workers <= 1 and not (options.runs_per_gpu > 1 and device.type == "cuda"):
        return InProcessBackend(options, log)
    return LokyBackend(options, device, runs)


def run_grid(job: Job, options: RunOptions, device: torch.device, progress: GridProgress | None = None) -> GridSummary:
    """Execute ``job.todo`` on ``device`` (resolved), in packs of at most ``options.pack`` runs,
    and write each record (and the tables) as it arrives, and the tables once more at the end.
    A stale record (``ok``, made by other code) is moved to ``superseded/`` when its run's new
    record is written. A run that fails in a pack is retried alone without being charged an
    attempt; a run that fails alone is retried up to ``options.retries`` times. When a record
    cannot be stored (:class:`StoreError`: disk full, ...), its run counts as failed, no other run
    starts (``summary.not_run``), the runs in flight are stored if they can be, and
    ``summary.error`` says why."""
    store, force, keep_stale, code_keys = job.store, job.force, job.keep_stale, job.code_keys
    progress = progress or GridProgress(len(job.todo))
    summary = GridSummary(total=len(job.runs), skipped=len(job.runs) - len(job.todo))
    backend = _backend(options, device, progress.log, len(job.todo))
    size = options.pack if isinstance(options.pack, int) else auto_pack_size(pack_budget(device, options.gpu_memory), job.todo)
    queue = deque(make_packs(job.todo, size, progress.log))
    if options.pack == "auto":
        progress.log(f"--pack auto on {device}: {describe_packs(queue)}")
    free = list(backend.slots)
    running: dict[Future, tuple[list[RunConfig], Slot, list[RunLock], bool]] = {}  # ..., runs alone
    attempts: dict[str, int] = {}
    # A dying worker process takes every run in flight on the pool down with it. Runs lost
    # beside others are not charged an attempt: they become suspects and run one at a time,
    # so only the run that kills its worker on its own is charged.
    suspects: set[str] = set()

    def stop(exc: StoreError) -> None:
        """Storing failed: start nothing more."""
        summary.error = summary.error or str(exc)
        summary.not_run += sum(len(pack) for pack in queue)
        queue.clear()

    try:
        while queue or running:
            while queue and free and not any(alone for *_, alone in running.values()):
                alone = queue[0][0].run_id in suspects
                if alone and running:
                    break
                pack, locks = [], []
                for config in queue.popleft():
                    lock = store.try_lock(config.run_id)
                    if lock is None:
                        summary.locked += 1
                        progress.log(f"{config.run_id} is being run by {lock_holder(store.lock_path(config.run_id))}: "
                                     "skipped")
                        progress.skip()
                        continue
                    if not force and attempts.get(config.run_id) is None and run_state(
                            store.read(config.run_id), code_keys[config.run_id], keep_stale) == "done":
                        lock.release()  # finished by another process since we looked
                        summary.finished_elsewhere += 1
                        progress.skip()
                        continue
                    pack.append(config)
                    locks.append(lock)
                if not pack:
                    continue
                checkpoint = store.checkpoint_path(pack_name(pack))
                damage = checkpoint_damage(checkpoint)
                if damage is not None:
                    progress.log(f"{pack_name(pack)}: checkpoint {checkpoint} cannot be read ({damage}): discarded, "
                                 "training starts afresh")
                    store.remove_checkpoint(pack_name(pack))
                slot = free.pop()
                for config in pack:
                    attempts[config.run_id] = attempts.get(config.run_id, 0) + 1
                    progress.started()
                future = backend.submit(pack, slot, str(checkpoint))
                running[future] = (pack, slot, locks, alone)
                if alone:
                    break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                pack, slot, locks, alone = running.pop(future)
                free.append(slot)
                try:
                    results = future.result()
                except Exception as exc:  # the worker died or could not run the task
                    if not alone or len(pack) > 1:
                        progress.log(f"{pack_name(pack)}: a worker process died while it ran; rerunning "
                                     f"{'its runs one at a time' if len(pack) > 1 else 'it alone'}")
                        for config, lock in zip(pack, locks):
                            attempts[config.run_id] -= 1
                            suspects.add(config.run_id)
                            progress.retrying()
                            lock.release()
                            if summary.error is None:
                                queue.appendleft([config])
                            else:
                                summary.not_run += 1
                        continue
                    results = [failed_result(pack[0], type(exc).__name__, f"worker lost: {exc}", traceback.format_exc())]
                finished, unstored, told = 0, False, set()
                for config, lock, result in zip(pack, locks, results):
                    record = result.record
                    if record.status == "failed":
                        packed = len(pack) > 1  # a failure in a pack is not charged: the run retries alone
                        attempts[config.run_id] -= packed
                        if summary.error is not None and (packed or attempts[config.run_id] <= options.retries):
                            lock.release()  # its retry is not run
                            summary.not_run += 1
                            progress.dropped()
                            continue
                        if packed or attempts[config.run_id] <= options.retries:
                            message = record.error.message[:200] if record.error else ""
                            if not packed:
                                progress.log(f"{config.run_id} failed (attempt {attempts[config.run_id]}), "
                                             f"retrying: {message}")
                            elif message not in told:  # e.g. a pack refused: one reason for every run
                                told.add(message)
                                progress.log(f"{pack_name(pack)}: its runs failed in a pack of {len(pack)}, "
                                             f"rerunning each alone: {message}")
                            progress.retrying()
                            lock.release()
                            queue.append([config])
                            continue
                    record.attempt = attempts[config.run_id]
                    record.grid = job.name
                    try:
                        if result.model_state is not None:
                            with storing(store.model_path(config.run_id)):
                                atomic_torch_save(result.model_state, store.model_path(config.run_id))
                        if run_state(store.read(config.run_id), code_keys[config.run_id]) == "stale":
                            with storing(store.superseded_dir()):
                                moved = store.supersede(config.run_id)
                            progress.log(f"{config.run_id}: record made by other code moved to {moved}")
                        store.write(record, result.images)
                    except StoreError as exc:
                        lock.release()
                        unstored = True
                        stop(exc)
                        progress.finished(failed_result(config, "StoreError", str(exc)).record)
                        continue
                    store.remove_checkpoint(config.run_id)
                    lock.release()
                    finished += 1
                    progress.finished(record)
                if not unstored or len(pack) > 1:  # a lone run keeps its checkpoint to resume from
                    store.remove_checkpoint(pack_name(pack))
                if finished:
                    try:
                        store.write_table()
                    except StoreError as exc:
                        stop(exc)
        try:
            store.write_table(save_cache=True)  # also when nothing ran: the tables always match the records on disk
        except StoreError as exc:
            stop(exc)
    finally:
        for _, _, locks, _ in running.values():
            for lock in locks:
                lock.release()
        backend.close(abort=bool(running))
        progress.close()
        summary.counts = dict(progress.counts)
    return summary
