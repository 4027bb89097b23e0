"""What a method promises the training loop, checked where breaking it would go unnoticed.

:func:`check_parts`: a loss returns scalar loss parts (:meth:`benchmark.ml.method.Method.loss`);
one that does not is named, with the part and what was expected, before torch fails elsewhere
with a message about shapes (or, worse, a per-example part is logged as its first example).
:func:`python_state`: a method's plain Python state (schedules, constants, counters), compared
between the runs of a pack and before / after a pack's first step (:mod:`benchmark.ml.pack`),
because a pack computes every run's loss with one copy of run 0's method.
"""

from __future__ import annotations

import contextlib
import re
import types
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn

REQUIRED_PARTS = ("loss", "rec", "kl")
_MODULE_BOOKKEEPING = frozenset(vars(nn.Module()))  # nn.Module's own instance attributes (hooks, ...)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class LossContractError(TypeError):
    """A method's loss returned parts that break the contract of ``Method.loss``."""


def check_parts(name: str, parts: Any) -> None:
    """Raise :class:`LossContractError` unless ``parts`` (what method ``name``'s loss returned) is
    a dict holding "loss", "rec" and "kl" as floating-point scalar tensors and every other entry
    as a number or a scalar tensor. Works inside ``torch.func.vmap`` (one run's shapes)."""
    where = f"{name}.loss"
    if not isinstance(parts, Mapping):
        raise LossContractError(f"{where} returned a {type(parts).__name__}; it must return a dict of scalar "
                                f"loss parts holding {', '.join(map(repr, REQUIRED_PARTS))}")
    missing = [key for key in REQUIRED_PARTS if key not in parts]
    if missing:
        raise LossContractError(f"{where} returned no {', '.join(map(repr, missing))} (it returned "
                                f"{', '.join(map(repr, parts)) or 'an empty dict'}); every loss must return "
                                f"{', '.join(map(repr, REQUIRED_PARTS))} (nats per example, averaged over the batch)")
    for key, value in parts.items():
        required = key in REQUIRED_PARTS
        if not isinstance(value, Tensor):
            if required or not isinstance(value, (int, float)) or isinstance(value, bool):
                kind = "a tensor" if required else "a number or a scalar tensor"
                raise LossContractError(f"{where} returned {key!r} as a {type(value).__name__}; it must be {kind}")
            continue
        if value.dim() != 0:
            raise LossContractError(f"{where} returned {key!r} of shape {list(value.shape)}; every part must be a "
                                    "scalar (mean over the batch)")
        if required and not value.is_floating_point():
            raise LossContractError(f"{where} returned {key!r} of dtype {value.dtype}; {key!r} must be floating point")


@contextlib.contextmanager
def checked_loss(method: nn.Module) -> Iterator[None]:
    """Inside, every call of ``method.loss`` is checked by :func:`check_parts` (the instance
    attribute shadows the class's method; removed on exit)."""
    loss = method.loss

    def checked(x: Tensor, progress: Any) -> Any:
        parts = loss(x, progress)
        check_parts(method.name, parts)
        return parts

    method.loss = checked
    try:
        yield
    finally:
        del method.loss


def python_state(method: nn.Module) -> dict[str, str]:
    """The plain Python state of ``method`` and its submodules: every instance attribute that is
    not a parameter, buffer, submodule, nn.Module bookkeeping or the method's ``config``, by
    dotted name, as comparable text (objects by their attributes, tensors by value; memory
    addresses left out)."""
    tensors = {id(t) for t in [*method.parameters(), *method.buffers()]}
    out = {}
    for prefix, module in method.named_modules():
        for key, value in vars(module).items():
            if key in _MODULE_BOOKKEEPING or (module is method and key == "config"):
                continue
            out[f"{prefix}.{key}" if prefix else key] = _ADDRESS.sub("", repr(_comparable(value, tensors, set())))
    return out


def state_difference(a: Mapping[str, str], b: Mapping[str, str]) -> str | None:
    """The first attribute in which two :func:`python_state` results differ, as ``self.NAME (A vs
    B)``, or None when they are equal."""
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"self.{key} ({_short(a.get(key, 'absent'))} vs {_short(b.get(key, 'absent'))})"
    return None


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _comparable(value: Any, tensors: set[int], seen: set[int]) -> Any:
    """``value`` as nested tuples of plain values (see :func:`python_state`)."""
    if id(value) in tensors:
        return "<parameter or buffer>"
    if isinstance(value, Tensor):
        try:
            data = None if value.device.type == "meta" else value.detach().cpu().tolist()
        except Exception:  # e.g. a tensor left behind by torch.func.vmap
            return ("tensor", id(value))
        return ("tensor", tuple(value.shape), str(value.dtype), data)
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, torch.dtype, torch.device)):
        return value
    if id(value) in seen:
        return "<cycle>"
    seen = seen | {id(value)}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_comparable(v, tensors, seen) for v in value]
        return (type(value).__name__, sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items)
    if isinstance(value, dict):
        return ("dict", [(repr(k), _comparable(v, tensors, seen)) for k, v in value.items()])
    if isinstance(value, types.FunctionType):  # by name and captured values
        return ("function", value.__qualname__, _comparable([c.cell_contents for c in value.__closure__ or ()],
                                                            tensors, seen))
    if isinstance(value, (type, types.MethodType, types.BuiltinFunctionType)):
        return ("callable", getattr(value, "__qualname__", repr(value)))
    if hasattr(value, "__dict__"):
        return (type(value).__qualname__, _comparable(vars(value), tensors, seen))
    return repr(value)
