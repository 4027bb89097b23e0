"""A pack's runs evaluated in lockstep: every run's own evaluation, their model calls batched.

Each run of a pack is evaluated by the code that evaluates a run alone
(:func:`benchmark.evaluation.evaluate.evaluate`), on its own thread and its own generators; only
its model is a stand-in (:meth:`Lockstep.method`). A call of the stand-in's ``encode``,
``decode_given`` or ``log_likelihood`` (:data:`BATCHED`: the passes behind AU, KL, MI's
posteriors, rec, the -ELBO and the IW-NLL) waits until every run still evaluating waits on a
call too; then the calls of one function on arguments of one shape, dtype and device run as one
``torch.func.vmap`` over the runs' stacked weights (``functional_call`` on a template of the
model), and each run gets its slice. Everything else (the metrics' arithmetic, the noise each run
draws from its own generator, decoder geometry, images) runs on the run's own thread as it would
alone. So a pack of K costs one model call per step of its evaluation, not K, and each run's
numbers are those of its evaluation alone up to float rounding (batched against plain matrix
products). A group of one call, a call made with gradients on, and a group whose batched call
raises (e.g. an operation without a vmap rule) are made by each run's own model, one by one.

The order of each run's calls and draws is its own; which calls share a batched call depends only
on that order (a round starts when every run waits), so the numbers do not depend on thread
timing. Between rounds the runs take turns (one thread works at a time): a run's own work (e.g.
MI's mixture, in chunks) never overlaps another's, so a pack's evaluation needs one run's working
memory beside the batched passes', not K runs'.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils._pytree import tree_map

from ..ml.method import Method
from ..ml.models import VAEModel

BATCHED = ("encode", "decode_given", "log_likelihood")  # model functions whose calls a round batches

T = TypeVar("T")


class _Call(nn.Module):
    """Calls ``model.<name>`` as its forward, for ``functional_call`` (weights keyed ``model.*``)."""

    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        self.model, self.name = model, name

    def forward(self, *args: Tensor) -> Any:
        return getattr(self.model, self.name)(*args)


@dataclass
class _Pending:
    """A run's call waiting for its round: ``name`` of :data:`BATCHED` on tensors ``args``."""

    run: int
    name: str
    args: tuple[Tensor, ...]
    result: Any = None
    error: BaseException | None = None
    done: bool = False

    def signature(self) -> tuple[Any, ...]:
        return (self.name, tuple((tuple(a.shape), a.dtype, a.device) for a in self.args))


class Lockstep:
    """The models of K >= 1 runs (one architecture, so their weights stack) evaluated in lockstep.

    :meth:`method` gives run k's stand-in method (its model calls go through the rounds);
    :meth:`run` runs one job per run on its own thread and returns their results in order.
    ``batched_calls`` / ``single_calls`` count the calls made as one vmapped call (a call per
    run counted) and one by one."""

    def __init__(self, models: Sequence[VAEModel]):
        self.models = list(models)
        params, buffers = stack_module_state(self.models) if len(self.models) > 1 else ({}, {})
        self.weights = {f"model.{name}": t for name, t in {**params, **buffers}.items()}  # [K, ...] each
        template = copy.deepcopy(self.models[0]).to("meta").eval()
        self.calls = {name: _Call(template, name) for name in BATCHED}
        self.condition = threading.Condition()
        self.turn = threading.Lock()  # held by the one run thread working between rounds
        self.pending: dict[int, _Pending] = {}
        self.live: set[int] = set()
        self.batched_calls = self.single_calls = 0

    def method(self, run: int, method: Method) -> Method:
        """Run ``run``'s stand-in for ``method`` (whose model is ``models[run]``)."""
        return _LockstepMethod(method, _LockstepModel(self, run, method.model))  # type: ignore[return-value]

    def call(self, run: int, name: str, args: tuple[Tensor, ...]) -> Any:
        """From run ``run``'s thread: ``models[run].<name>(*args)``, made in the next round."""
        if torch.is_grad_enabled() or not self.live:  # (gradients: a caller differentiating through it)
            with self.condition:
                self.single_calls += 1
            return getattr(self.models[run], name)(*args)
        item = _Pending(run, name, args)
        self.turn.release()
        try:
            with self.condition:
                self.pending[run] = item
                self.condition.notify_all()
                while not item.done:
                    self.condition.wait()
        finally:
            self.turn.acquire()
        if item.error is not None:
            raise item.error
        return item.result

    def run(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """``jobs[k]()`` for every run k, each on its own thread, model calls in rounds; the
        results in order (a job's exception is raised here, after every job has ended)."""
        if len(jobs) != len(self.models):
            raise ValueError(f"one job per run: {len(jobs)} jobs for {len(self.models)} runs")
        results: list[Any] = [None] * len(jobs)
        errors: list[BaseException] = []

        def work(k: int) -> None:
            self.turn.acquire()
            try:
                results[k] = jobs[k]()
            except BaseException as exc:  # noqa: BLE001 (raised again on the caller's thread)
                errors.append(exc)
            finally:
                self.turn.release()
                with self.condition:
                    self.live.discard(k)
                    self.condition.notify_all()

        self.live = set(range(len(jobs)))
        threads = [threading.Thread(target=work, args=(k,), name=f"lockstep-{k}", daemon=True) for k in range(len(jobs))]
        for thread in threads:
            thread.start()
        with self.condition:
            while self.live:
                if len(self.pending) < len(self.live):
                    self.condition.wait()
                    continue
                items, self.pending = list(self.pending.values()), {}
                self._round(items)
                self.condition.notify_all()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return results

    @torch.no_grad()
    def _round(self, items: list[_Pending]) -> None:
        """Make every waiting call: each group of one signature as one vmapped call."""
        groups: dict[tuple[Any, ...], list[_Pending]] = {}
        for item in sorted(items, key=lambda i: i.run):
            groups.setdefault(item.signature(), []).append(item)
        for group in groups.values():
            if len(group) == 1 or not self._batched(group):
                for item in group:
                    self._single(item)
            for item in group:
                item.done = True

    def _batched(self, group: list[_Pending]) -> bool:
        """The group's calls as one vmapped call over its runs' weights; False when it raises."""
        runs = [item.run for item in group]
        index = None if runs == list(range(len(self.models))) else torch.tensor(runs)
        weights = self.weights if index is None else {k: v[index.to(v.device)] for k, v in self.weights.items()}
        args = [torch.stack([item.args[i] for item in group]) for i in range(len(group[0].args))]
        call = self.calls[group[0].name]
        try:
            out = vmap(lambda w, *a: functional_call(call, w, a, tie_weights=False))(weights, *args)
        except Exception:  # noqa: BLE001 (no vmap rule, or a data-dependent branch: made one by one)
            return False
        for position, item in enumerate(group):
            item.result = tree_map(lambda t, p=position: t[p] if isinstance(t, Tensor) else t, out)
        self.batched_calls += len(group)
        return True

    def _single(self, item: _Pending) -> None:
        try:
            item.result = getattr(self.models[item.run], item.name)(*item.args)
        except Exception as exc:  # noqa: BLE001 (raised on the run's own thread)
            item.error = exc
        self.single_calls += 1


class _LockstepModel:
    """Run ``run``'s model with its :data:`BATCHED` functions made in the lockstep's rounds; every
    other attribute is the model's own."""

    def __init__(self, lockstep: Lockstep, run: int, model: VAEModel):
        self._lockstep, self._run, self._model = lockstep, run, model

    def __getattr__(self, name: str) -> Any:
        if name in BATCHED:
            return lambda *args: self._lockstep.call(self._run, name, args)
        return getattr(self._model, name)


class _LockstepMethod:
    """A run's method whose ``model`` is its :class:`_LockstepModel`; everything else its own."""

    def __init__(self, method: Method, model: _LockstepModel):
        self._method, self.model = method, model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._method, name)
