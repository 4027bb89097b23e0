"""Weight schedules: warm-up, annealing and cyclical values of a loss weight over training.

A schedule is a small frozen object called as ``schedule(progress, last_kl=None) -> float``
with the run's :class:`~benchmark.ml.method.TrainingProgress`. ``last_kl`` is the previous
step's batch-mean KL (nats per example; a 0-dim tensor is accepted); only ``kl-adaptive``
reads it. Build one by name with :func:`make_schedule`, e.g.
``make_schedule("linear", 1.0, duration=0.5)``.

Positions in the run: ``linear``, ``decay`` and ``exponential`` use
``p = step / (total_steps - 1)``, which is 0 at the first step and 1 at the last, so the
target is reached exactly on the last step; ``cyclical`` uses ``progress.fraction``
(``step / total_steps``) so that cycles restart on epoch boundaries.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor

from ..errors import GridError
from .method import TrainingProgress
from ..registry import Registry


class Schedule(Protocol):
    target: float

    def __call__(self, progress: TrainingProgress, last_kl: float | Tensor | None = None) -> float: ...


SCHEDULES: Registry[type] = Registry("schedule")


def run_position(progress: TrainingProgress) -> float:
    """0 at the first step, 1 at the last step of the run."""
    return min(progress.step / max(progress.total_steps - 1, 1), 1.0)


def _check_duration(duration: float) -> None:
    if not 0 < duration <= 1:
        raise ValueError(f"duration must be in (0, 1] (a fraction of the run), got {duration}")


@SCHEDULES.register("constant")
@dataclass(frozen=True)
class Constant:
    """``target`` at every step."""

    target: float

    def __call__(self, progress: TrainingProgress, last_kl: float | Tensor | None = None) -> float:
        return self.target


@SCHEDULES.register("linear")
@dataclass(frozen=True)
class Linear:
    """From ``start`` to ``target`` linearly over the first ``duration`` of the run, then flat.

    start: value at the first step (default 0).
    duration: fraction of the run over which the value moves (default 1: the whole run).
    """

    target: float
    start: float = 0.0
    duration: float = 1.0

    def __post_init__(self) -> None:
        _check_duration(self.duration)

    def __call__(self, progress: TrainingProgress, last_kl: float | Tensor | None = None) -> float:
        ramp = min(run_position(progress) / self.duration, 1.0)
        return self.start + (self.target - self.start) * ramp


@SCHEDULES.register("sigmoid")
@dataclass(frozen=True)
class Sigmoid:
    """From ``start`` to ``target`` along a logistic curve over the first ``duration`` of the
    run, then flat (Bowman et al. 2016's sigmoid KL annealing). The logistic
    ``1 / (1 + exp(-steepness (u - 1/2)))`` in the warm-up position ``u`` in [0, 1] is rescaled
    to be exactly 0 at ``u = 0`` and exactly 1 at ``u = 1``, so the value is exactly ``start``
    at the first step and exactly ``target`` from the end of the warm-up on.

    start: value at the first step (default 0).
    duration: fraction of the run over which the value moves (default 1: the whole run).
    steepness: slope of the logistic at the warm-up's midpoint, in units of the warm-up (default 10; larger is closer to a step).
    """

    target: float
    start: float = 0.0
    duration: float = 1.0
    steepness: float = 10.0

    def __post_init__(self) -> None:
        _check_duration(self.duration)
        if not 0 < self.steepness <= 100:
            raise ValueError(f"steepness must be in (0, 100], got {self.steepness}")

    def __call__(self, progress: TrainingProgress, last_kl: float | Tensor | None = None) -> float:
        u = min(run_position(progress) / self.duration, 1.0)
        low, high = _logistic(-self.steepness / 2), _logistic(self.steepness / 2)
        ramp = (_logistic(self.steepness * (u - 0.5)) - low) / (high - low)
        return self.start + (self.target - self.start) * ramp


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@SCHEDULES.register("decay")
@dataclass(frozen=True)
class Decay(Linear):
    """From ``start`` (required, usually above ``target``) linearly to ``target``, then flat.

    start: value at the first step.
    duration: fraction of the run over which the value moves (default 1: the whole run).
    """

    start: float = field()  # required (an explicit field: the inherited default would apply)


@SCHEDULES.register("exponential")
@dataclass(frozen=True)
class Exponential:
    """``target * clip(2 ** (p / duration) - 1, 0, 1)``: slow start, reaches target at ``duration``.

    duration: fraction of the run after which the value is ``target`` (default 1).
    """

    target: float
    duration: float = 1.0

    def __post_init__(self) -> None:
        _check_duration(self.duration)

    def __call__(self, progress: TrainingProgress, last_kl: float | Tensor | None = None) -> float:
        return self.target * min(max(2.0 ** (run_position(progress) / self.duration) - 1.0, 0.0), 1.0)


@SCHEDULES.register("cyclical")
@dataclass(frozen=True)
class Cyclical:
    """Cyclical annealing (Fu et al. 2019): ``cycles`` equal cycles over the run; in each, a
    linear rise from 0 to ``target`` over the first ``ratio`` of the cycle, then flat.

    cycles: number of cycles M (restarting every k epochs is ``cycles = epochs / k``).
    ratio: fraction R of each cycle spent rising (default 0.5).
    """

    target: float
    cycles: int = 4
    ratio: float = 0.5

    def __post_init__(self) -> None:
        if int(self.cycles) != self.cycles or self.cycles < 1:
            raise ValueError(f"cycles must be a positive integer, got {self.cycles}")
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")

    def __call__(self, progress: TrainingProgress, last_kl: float | Tensor | None = None) -> float:
        within = (progress.fraction * self.cycles) % 1.0
        return self.target * min(within / self.ratio, 1.0)


@SCHEDULES.register("kl-adaptive")
@dataclass(frozen=True)
class KLAdaptive:
    """``target / (1 + exp(KL_prev - center))``: high weight while the KL is low (collapse).

    center: KL (nats per example) at which the weight is half the target (default 5).
    KL_prev is the previous step's batch-mean KL; before the first step it counts as 0. Given as
    a tensor (a method's buffer), the weight is a 0-d float64 tensor on its device: no read-back
    to the host in the step, and each run's own in a pack.
    """

    target: float
    center: float = 5.0

    def __call__(self, progress: TrainingProgress, last_kl: float | Tensor | None = None) -> float | Tensor:
        if isinstance(last_kl, Tensor):  # a run's buffer: computed on its device (float64), never read back
            return self.target / (1.0 + (last_kl.double() - self.center).clamp(max=700.0).exp())
        kl = 0.0 if last_kl is None else last_kl
        return self.target / (1.0 + math.exp(min(kl - self.center, 700.0)))


def make_schedule(kind: str, target: float, **options: float) -> Schedule:
    """The registered schedule ``kind`` ending at (or holding) ``target``, with its ``options``.

    Raises :class:`~benchmark.errors.UnknownNameError` for an unknown kind and
    :class:`~benchmark.errors.GridError` for an unknown, missing or invalid option.
    """
    cls = SCHEDULES[kind]
    valid = [f.name for f in dataclasses.fields(cls) if f.name != "target"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise GridError(f"schedule {kind!r} has no option {', '.join(map(repr, unknown))}; "
                        f"valid options: {', '.join(valid) or '(none)'}")
    try:
        return cls(target=float(target), **options)
    except (TypeError, ValueError) as exc:
        raise GridError(f"schedule {kind!r}: {exc}") from None
