"""Packs: K runs of one method trained as one model with a leading run axis.

The runs' parameters and buffers are stacked ([K, ...] each, ``torch.func.stack_module_state``)
and one copy of the method (the template, on the meta device) computes every run's loss in
one ``torch.func.vmap`` over the template's loss, with each run's slice of the stack put in the
template's place for it (:class:`Slots`). Runs in a pack share everything but their seed and the
method's ``pack_scalars`` (:func:`pack_key`): method, the other hyperparameters,
model, data set config and training config, so the template's Python state (schedules,
constants) is every run's. A pack scalar (e.g. beta) is handed to the template as a 0-d tensor
holding each run's value, in place of the float its config has, and in place of the target of
a schedule the method built from it in ``__init__`` (lr-vae's alpha schedule ends at alpha_T:
:func:`schedule_scalars`). That is checked, not trusted (:class:`PackRefused`): runs whose
methods' Python state differs otherwise (e.g. a float computed in ``__init__`` from a pack
scalar) are not stacked, nor are runs whose loss changes the template's Python state in the
pack's first step; their runs then train alone.

What stays per run: the initialisation (each method is built from its own seed before it is
stacked), the data subset and batch order, the optimiser state (Adam's is per element), the
gradient-norm clipping (:func:`clip_per_run`), buffers such as a schedule's last KL, the loss
parts, and the sampling noise. A method draws its noise with ``torch.randn`` / ``randn_like``
(the global RNG, when it trains alone); in a pack each run's draws come from its own generator,
seeded as the run seeds the global RNG when it trains alone, so a packed run gets the noise of
the same run trained alone and its numbers match it to float rounding (:class:`NoiseTape`). The
sequence of draws of one step (their shapes) is recorded once per batch shape by calling one
run's loss outside ``vmap``; a random call the tape does not know is an error (``vmap``'s
``randomness="error"``), and the run is then rerun alone.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.func import stack_module_state, vmap

from ..config import ModelConfig, RunConfig
from ..data.catalog import DATASETS
from .archs import arch_kind
from .contract import check_parts, python_state, state_difference
from .method import Method, TrainingProgress


class PackRefused(RuntimeError):
    """These runs cannot train as one pack (each can train alone); the message says why."""


def pack_problem(method: type[Method], model: ModelConfig | None = None) -> str | None:
    """Why runs of ``method`` (on ``model``, when given) cannot share a pack (None: they can). A
    method opts in with the class attribute ``packable = True``, which promises that its ``loss``
    is a pure function of its parameters, buffers (updated in place only), the batch and the
    progress, with the sampling noise drawn by ``torch.randn`` / ``torch.randn_like`` only, the
    same draws in every step of one batch shape (:class:`NoiseTape`). A method that overrides
    ``training_step`` or ``on_epoch_end`` packs only when it also writes its step for a pack
    (``pack_training_step``, :mod:`benchmark.ml.pack_step`), reading each run's Python state
    from the run's own method (``on_epoch_end`` runs on each run's method, which the loss must not
    read). LSTM models never pack: ``torch.func.vmap`` has no batching rule for ``aten::lstm``
    (torch 2.14), and their length-bucketed batches differ in size from run to run."""
    if model is not None and arch_kind(model) == "sequence":
        return f"{model.arch} is an LSTM: torch.func.vmap has no batching rule for aten::lstm"
    for hook in ("training_step", "on_epoch_end"):
        if getattr(method, hook) is not getattr(Method, hook) and not packs_its_own_step(method):
            why = getattr(method, "pack_refusal", None)  # a method's own words on why (descriptive: not in its code key)
            return (f"{method.name} overrides {hook} without a pack_training_step"
                    + (f": {why}" if why else ", and its step works on one model at a time"))
    if not getattr(method, "packable", False):
        return f"{method.name} does not declare packable = True"
    return None


def packs_its_own_step(method: type[Method]) -> bool:
    """Whether ``method`` writes its own step for a pack (``pack_training_step``)."""
    return method.pack_training_step is not Method.pack_training_step


def schedule_scalars(methods: Sequence[Method], scalars: Sequence[str]) -> dict[str, str]:
    """The schedules ``methods`` (the runs of a pack) built from a pack scalar, by attribute:
    ``{attribute: scalar}`` for each attribute of the method that holds a schedule (a dataclass
    with a ``target``, :mod:`benchmark.ml.schedules`) which, in every run, is run 0's schedule
    with its target set to that run's value of the scalar (e.g. ``{"alpha_schedule": "alpha_T"}``
    for lr-vae). A schedule's value is ``target`` times a ramp computed from the progress, or
    ``target`` itself, so a tensor target gives each run its own value."""
    found: dict[str, str] = {}
    for attribute, first in vars(methods[0]).items():
        if not dataclasses.is_dataclass(first) or isinstance(first, type) or not hasattr(first, "target"):
            continue
        for name in scalars:
            values = [float(getattr(m.config, name)) for m in methods]
            if all(getattr(m, attribute, None) == dataclasses.replace(first, target=v) for m, v in zip(methods, values)):
                found[attribute] = name
                break
    return found


def pack_key(config: RunConfig, scalars: Sequence[str] = ()) -> str:
    """Runs with equal keys may share a pack: everything but the seed, the hyperparameters named
    in ``scalars`` (the method's ``pack_scalars``) and the data set is equal, and their data sets
    have examples of one shape and training splits of one size (e.g. MNIST and Fashion-MNIST):
    each run of a pack draws its batches from its own data, so only the shape of a step must be
    shared (the trainer refuses a pack whose loaded splits differ in size, and its runs then
    train alone)."""
    shared = sorted((k, v) for k, v in config.hyperparameters.items() if k not in scalars)
    spec = DATASETS[config.dataset.name]
    data = (repr(spec.shape), spec.kind, config.dataset.train_size or spec.train_size)
    return repr((config.method, shared, dataclasses.asdict(config.model), data,
                 dataclasses.asdict(config.train), dataclasses.asdict(config.eval)))


class Slots:
    """Where each stacked tensor sits in the template (a method on the meta device): for each name
    of ``names`` (``encoder.0.weight``...), the ``_parameters`` or ``_buffers`` dict of its
    module and its key there (``nn.Module``'s own dicts, where ``torch.func.functional_call``
    puts its tensors too). :meth:`holding` puts a step's tensors in those places for the duration
    of a call and the template's own back after: what ``functional_call`` does, without resolving
    every name again in every step (the names are resolved once here)."""

    def __init__(self, template: nn.Module, names: Sequence[str]):
        self.places = []
        for name in names:
            prefix, _, leaf = name.rpartition(".")
            module = template.get_submodule(prefix)
            store = module._parameters if leaf in module._parameters else module._buffers
            self.places.append((store, leaf))

    @contextlib.contextmanager
    def holding(self, tensors: Sequence[Tensor]):
        originals = [store[leaf] for store, leaf in self.places]
        try:
            for (store, leaf), tensor in zip(self.places, tensors):
                store[leaf] = tensor
            yield
        finally:
            for (store, leaf), tensor in zip(self.places, originals):
                store[leaf] = tensor


def _like(name: str, args: tuple, kwargs: dict) -> Tensor:
    """An uninitialised tensor of the shape, dtype and device ``torch.<name>(*args, **kwargs)``
    would return (``randn`` or ``randn_like``), drawing nothing."""
    kwargs = {k: v for k, v in kwargs.items() if k != "generator"}
    return torch.empty(*args, **kwargs) if name == "randn" else torch.empty_like(*args, **kwargs)


class NoiseTape:
    """Each run's sampling noise for one step of a pack, drawn from the run's own generator.

    :meth:`record` learns the draws of one step (function, shape, dtype, device) from one run's
    loss; :meth:`draw` draws them for every run ([K, *shape] each, run k's from ``generators[k]``,
    in the recorded order, as the run would draw them from the global RNG alone); inside the
    vectorised loss, :meth:`replay` hands the slices out in that order in place of
    ``torch.randn`` / ``torch.randn_like``.
    """

    FUNCTIONS = ("randn", "randn_like")

    def __init__(self, generators: Sequence[torch.Generator]):
        self.generators = list(generators)
        self.steps: dict[tuple[int, ...], list[tuple[tuple[int, ...], torch.dtype, torch.device]]] = {}
        self.buffers: dict[tuple[int, ...], list[Tensor]] = {}

    @contextlib.contextmanager
    def _patched(self, fake):
        originals = {name: getattr(torch, name) for name in self.FUNCTIONS}
        try:
            for name in self.FUNCTIONS:
                setattr(torch, name, functools.partial(fake, originals[name], name))
            yield
        finally:
            for name, fn in originals.items():
                setattr(torch, name, fn)

    def record(self, key: tuple[int, ...], loss) -> None:
        """Learn the draws ``loss()`` makes (once per ``key``, the batch shape); the draws
        return zeros, so nothing else is consumed."""
        if key in self.steps:
            return
        draws: list[tuple[tuple[int, ...], torch.dtype, torch.device]] = []

        def fake(original, name, *args, **kwargs):
            out = _like(name, args, kwargs).zero_()
            draws.append((tuple(out.shape), out.dtype, out.device))
            return out

        with self._patched(fake), torch.no_grad():
            loss()
        self.steps[key] = draws

    def draw(self, key: tuple[int, ...], active: Sequence[bool] | None = None) -> list[Tensor]:
        """This step's noise, [K, *shape] per recorded draw, drawn into buffers kept per batch
        shape (``empty(shape).normal_(generator=g)`` is ``randn(shape, generator=g)``, value for
        value; a step's autograd graph is gone when the next step draws). A run not ``active``
        draws nothing (its generator keeps its state; its slices hold older values)."""
        buffers = self.buffers.get(key)
        if buffers is None:
            buffers = self.buffers[key] = [torch.empty((len(self.generators), *shape), dtype=dtype, device=device)
                                           for shape, dtype, device in self.steps[key]]
        for buffer in buffers:
            for k, generator in enumerate(self.generators):
                if active is None or active[k]:
                    buffer[k].normal_(generator=generator)
        return buffers

    @contextlib.contextmanager
    def replay(self, noise: list[Tensor]):
        """Inside the vectorised loss (``noise``: this run's slices, in order)."""
        queue = list(noise)

        def fake(original, name, *args, **kwargs):
            expected = _like(name, args, kwargs)
            if not queue:
                raise RuntimeError(f"the packed loss drew more noise than its recorded step ({name}); "
                                   "its draws must depend on the batch shape only")
            value = queue.pop(0)
            if tuple(value.shape) != tuple(expected.shape):
                raise RuntimeError(f"the packed loss drew noise of shape {tuple(expected.shape)} where its recorded "
                                   f"step drew {tuple(value.shape)}; its draws must depend on the batch shape only")
            return value

        with self._patched(fake):
            yield
        if queue:
            raise RuntimeError("the packed loss drew less noise than its recorded step")

    def state(self) -> list[Tensor]:
        return [g.get_state() for g in self.generators]

    def load_state(self, states: Sequence[Tensor]) -> None:
        for g, state in zip(self.generators, states):
            g.set_state(state)


class StackedMethods:
    """The parameters and buffers of ``methods`` (K >= 2 runs of one packable method, equal
    configs) stacked along a leading run axis, and their vectorised loss."""

    def __init__(self, methods: Sequence[Method], noise: Sequence[torch.Generator]):
        kinds = {type(m) for m in methods}
        if len(kinds) != 1:
            raise ValueError(f"a pack holds runs of one method, got {sorted(k.name for k in kinds)}")
        problem = pack_problem(type(methods[0]))
        if problem is not None:
            raise ValueError(f"cannot pack: {problem}")
        self.methods = list(methods)
        self.scalar_names = tuple(getattr(type(methods[0]), "pack_scalars", ()))
        shared = [{k: v for k, v in dataclasses.asdict(m.config).items() if k not in self.scalar_names}
                  for m in self.methods] if dataclasses.is_dataclass(methods[0].config) else [{}]
        if any(s != shared[0] for s in shared):
            raise ValueError("the runs of a pack may differ only in their seed and "
                             f"{', '.join(self.scalar_names) or 'no hyperparameter'}")
        self.schedules = schedule_scalars(self.methods, self.scalar_names)  # their targets are pack scalars too

        def own_state(method: Method) -> dict[str, str]:
            return {k: v for k, v in python_state(method).items() if k not in self.schedules}

        state = own_state(self.methods[0])
        for k, method in enumerate(self.methods[1:], start=1):
            differs = state_difference(state, own_state(method))
            if differs is not None:
                raise PackRefused(f"{type(method).name}: run {k}'s method differs from run 0's in {differs}, and a "
                                  "pack computes every run's loss with run 0's (keep per-run state in buffers, or "
                                  "read pack scalars from self.config in the loss)")
        params, buffers = stack_module_state(self.methods)
        self.params = {name: p.detach().requires_grad_(True) for name, p in params.items()}
        self.buffers = dict(buffers)
        self.tensors = (*self.params.values(), *self.buffers.values())  # a step's vmap inputs, in slot order
        self.template = copy.deepcopy(self.methods[0]).to("meta")
        self.slots = Slots(self.template, [*self.params, *self.buffers])
        self.shadow_config = copy.copy(self.template.config)  # holds a step's pack scalars
        # each such schedule: (attribute, the template's own, a copy that holds a step's target, its scalar's index)
        self.schedule_slots = [(a, getattr(self.template, a), copy.copy(getattr(self.template, a)),
                                self.scalar_names.index(name)) for a, name in self.schedules.items()]
        device = self.tensors[0].device
        self.scalars = tuple(torch.tensor([float(getattr(m.config, name)) for m in self.methods], device=device)
                             for name in self.scalar_names)  # [K] each
        if len(noise) != len(self.methods):
            raise ValueError("a pack needs one noise generator per run")
        self.noise = NoiseTape(noise)
        self.checked = False  # the first step checks the loss parts and that the loss keeps the template's state

    def parameters(self) -> list[Tensor]:
        return list(self.params.values())

    def _call(self, tensors: Sequence[Tensor], scalars: Sequence[Tensor], x: Tensor,
              progress: TrainingProgress) -> dict[str, Any]:
        """The template's loss on one run's ``tensors`` (parameters then buffers, in slot order),
        pack ``scalars`` (0-d each, in :attr:`scalar_names` order) and batch ``x``."""
        method, config = self.template, self.template.config
        if scalars:  # this run's values, without the config's (or schedules') checks: they ran when it was built
            for name, value in zip(self.scalar_names, scalars):
                object.__setattr__(self.shadow_config, name, value)
            method.config = self.shadow_config
            for attribute, _, shadow, index in self.schedule_slots:
                object.__setattr__(shadow, "target", scalars[index])
                setattr(method, attribute, shadow)
        try:
            with self.slots.holding(tensors):
                return method.loss(x, progress)
        finally:
            method.config = config
            for attribute, own, _, _ in self.schedule_slots:
                setattr(method, attribute, own)

    def _first_run(self) -> list[Tensor]:
        """Run 0's slices of the stack, in slot order (its buffers copied: recording a step's noise
        calls the loss once more, which must not update them)."""
        return [*(p[0] for p in self.params.values()), *(b[0].clone() for b in self.buffers.values())]

    def loss(self, x: Tensor, progress: TrainingProgress, active: Sequence[bool] | None = None) -> dict[str, Tensor]:
        """Every run's loss parts, [K] each, for ``x`` [K, B, *shape] (run k's batch is x[k]); a run
        not ``active`` draws no noise (:meth:`NoiseTape.draw`)."""
        name = self.template.name

        def one(tensors, scalars, noise, xk) -> dict[str, Tensor]:
            with self.noise.replay(noise):
                parts = self._call(tensors, scalars, xk, progress)
            if not self.checked:
                check_parts(name, parts)  # one run's shapes, inside vmap
            # a Python number (a schedule's weight) becomes a tensor filled on the device: no host-to-device copy
            return {k: v if isinstance(v, Tensor) else xk.new_full((), v) for k, v in parts.items()}

        before = None if self.checked else python_state(self.template)
        key = tuple(x.shape[1:])
        self.noise.record(key, lambda: self._call(self._first_run(), [s[0] for s in self.scalars], x[0], progress))
        parts = vmap(one, randomness="error")(self.tensors, self.scalars, self.noise.draw(key, active), x)
        if before is not None:
            changed = state_difference(before, python_state(self.template))
            if changed is not None:
                raise PackRefused(f"{name}.loss changed its Python state, {changed}, and a pack "
                                  "shares that state between its runs (keep per-run state in buffers)")
            self.checked = True
        return parts

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy each run's slice into its own method (for curves, evaluation and records)."""
        for k, method in enumerate(self.methods):
            for name, tensor in [*method.named_parameters(), *method.named_buffers()]:
                source = self.params.get(name, self.buffers.get(name))
                tensor.copy_(source[k])

    def state_dict(self) -> dict[str, Any]:
        return {"params": {k: v.detach().clone() for k, v in self.params.items()},
                "buffers": {k: v.clone() for k, v in self.buffers.items()}, "noise": self.noise.state()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["params"].items():
            self.params[k].copy_(v)
        for k, v in state["buffers"].items():
            self.buffers[k].copy_(v)
        self.noise.load_state(state["noise"])
        self.write_back()


@torch.no_grad()
def clip_per_run(params: Iterable[Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` for each run of a stack: run k's gradient (the slices
    [k] of every parameter's ``.grad``) is scaled so its total 2-norm is at most ``max_norm``."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]).norm(dim=0)  # [K]
    scale = (max_norm / (norms + 1e-6)).clamp_(max=1.0)
    torch._foreach_mul_(grads, [scale.view(-1, *[1] * (g.dim() - 1)).to(g.dtype) for g in grads])  # one call, not one per tensor
