"""Does a method keep the packing promise? ``python -m benchmark check-method NAME``.

A method that declares ``packable = True`` promises that its runs can train as one stacked model
(:func:`benchmark.ml.pack.pack_problem` says what that requires: a loss that is a pure function of
the run's own parameters, buffers, batch and progress). Nothing in Python can enforce it, so this
check trains the method on small random images as a pack of three runs and each run alone, every
run drawing the same sampling noise both ways, with ``beta`` differing between the runs where the
method packs it. Per-run state shared by a pack shows as a refused pack (Python state that differs
between the runs, such as a hyperparameter read once in ``__init__``, or that the loss changes:
:class:`benchmark.ml.pack.PackRefused`) or as a mismatch of the per-epoch loss means or of the
trained models (e.g. a cached tensor).
The test suite runs it for every registered packable method, plugins included; a plugin's own
tests can call :func:`pack_mismatches` the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import torch

from ..config import ModelConfig, TrainConfig
from ..discovery import METHODS
from ..errors import GridError, first_line
from ..ml.method import Method, build_method
from ..ml.pack import PackRefused, pack_problem
from ..ml.train import Trainer

SHAPE = (1, 8, 8)  # tiny random images (uint8 pixels, as image sets store them)
MODEL = ModelConfig(latent_dim=4, options={"hidden": [24]})
TRAIN = TrainConfig(epochs=2, batch_size=16, grad_clip=2.0)  # clipping active: per-run gradient norms
EXAMPLES = 50
SEEDS = (0, 1, 2)
NOISE = 100  # run s draws its sampling noise from a generator seeded NOISE + s
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-5  # per-epoch loss means: packed against alone (float rounding of batched products)
MODEL_RTOL, MODEL_ATOL = 1e-3, 1e-4  # the trained encoders and decoders, compared as functions


def pixels(n: int, seed: int) -> torch.Tensor:
    """``n`` random 8 x 8 uint8 images [n, 1, 8, 8]."""
    return torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def run_hyperparameters(name: str, hyperparameters: dict[str, Any]) -> list[dict[str, Any]]:
    """Each run's hyperparameters: every pack scalar of the method differs between the runs, run k
    at (0.5 + k) times its value (given, else the default; 1 where that is 0)."""
    cls = METHODS[name]
    defaults = dataclasses.asdict(cls.Config()) if dataclasses.is_dataclass(cls.Config) else {}
    bases = {s: float(hyperparameters.get(s, defaults.get(s, 1.0)) or 1.0) for s in cls.pack_scalars}
    return [{**hyperparameters, **{s: base * (0.5 + k) for s, base in bases.items()}} for k in range(len(SEEDS))]


def _build(name: str, hyperparameters: dict[str, Any], seed: int) -> Method:
    torch.manual_seed(seed)
    return build_method(name, hyperparameters, MODEL, SHAPE)


def pack_mismatches(name: str, hyperparameters: dict[str, Any] | None = None) -> list[str]:
    """What differs between ``name``'s runs trained as a pack and alone (empty: nothing; each item
    names the run, epoch and loss part or model output). Raises ``ValueError`` with the reason
    when the method does not pack."""
    why = pack_problem(METHODS[name], MODEL)
    if why is not None:
        raise ValueError(why)
    hps = run_hyperparameters(name, dict(hyperparameters or {}))
    packed = [_build(name, hp, s) for hp, s in zip(hps, SEEDS)]
    try:
        trainer = Trainer(packed, [pixels(EXAMPLES, s) for s in SEEDS], TRAIN,
                          [torch.Generator().manual_seed(s) for s in SEEDS],
                          noise=[torch.Generator().manual_seed(NOISE + s) for s in SEEDS])
        packed_means = [trainer.run_epoch() for _ in range(TRAIN.epochs)]
    except PackRefused as exc:  # the runner trains such runs alone; the method still breaks its promise
        return [f"the pack was refused: {exc}"]
    except RuntimeError as exc:  # e.g. vmap refusing .item() in the loss; the runner reruns such a pack alone
        return [f"the packed step failed: {first_line(str(exc))}"]
    problems = []
    for k, seed in enumerate(SEEDS):
        alone = _build(name, hps[k], seed)
        torch.manual_seed(NOISE + seed)  # alone, a run draws its noise from the global RNG
        single = Trainer([alone], [pixels(EXAMPLES, seed)], TRAIN, [torch.Generator().manual_seed(seed)])
        for epoch in range(TRAIN.epochs):
            (means,), got = single.run_epoch(), packed_means[epoch][k]
            if got is None or means is None:
                problems.append(f"run {k} (seed {seed}) diverged in epoch {epoch + 1} "
                                f"{'in the pack, not alone' if got is None else 'alone, not in the pack'}")
                break
            problems += [f"run {k} (seed {seed}), epoch {epoch + 1}, {key}: {got.get(key)} packed, {value} alone"
                         for key, value in means.items()
                         if not (key in got and math.isclose(got[key], value, rel_tol=LOSS_RTOL, abs_tol=LOSS_ATOL))]
        problems += _model_mismatches(alone, packed[k], f"run {k} (seed {seed})")
    return problems


def _model_mismatches(alone: Method, packed: Method, label: str) -> list[str]:
    """The trained models compared as functions on fixed probe images (not by parameters: e.g.
    bn-vae's batch norm cancels half of the encoder's last bias, which Adam moves by rounding)."""
    probe = pixels(16, 99).float() / 255
    with torch.no_grad():
        alone.model.train()
        packed.model.train()
        (mu_a, logvar_a), (mu_p, logvar_p) = alone.model.encode(probe), packed.model.encode(probe)
        outputs = [("posterior mean", mu_p, mu_a), ("posterior log-variance", logvar_p, logvar_a),
                   ("decoder output", packed.model.decode(mu_a), alone.model.decode(mu_a))]
    return [f"{label}: trained {what} differs by up to {float((p - a).abs().max()):.3g}"
            for what, p, a in outputs if not torch.allclose(p, a, rtol=MODEL_RTOL, atol=MODEL_ATOL)]


def parse_hyperparameters(items: list[str]) -> dict[str, Any]:
    """``["beta=0.5", "schedule=linear"]`` -> ``{"beta": 0.5, "schedule": "linear"}`` (JSON values,
    else strings). Raises ``ValueError`` on an item without ``=``."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--hp {item!r} is not KEY=VALUE; write e.g. --hp beta=0.5")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def check(name: str, hyperparameters: dict[str, Any]) -> tuple[int, str]:
    """(exit code, message): 0 when the method packs faithfully or does not pack, 1 on mismatches."""
    try:
        problems = pack_mismatches(name, hyperparameters)
    except ValueError as exc:
        return 0, f"{name} does not pack ({exc}): its runs always train alone, nothing to check"
    except GridError as exc:
        return 0, f"{name} does not apply to the check's small MLP on images ({exc}): nothing to check"
    if problems:
        return 1, (f"{name} breaks the packing promise: its runs trained as a pack differ from the same runs "
                   "trained alone (per-run state shared by the pack, or a loss that is not a pure function of "
                   "the run's parameters, batch and progress; see pack_problem in benchmark/ml/pack.py):\n  "
                   + "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else ""))
    return 0, (f"{name}: {len(SEEDS)} runs trained as a pack match the same runs trained alone ({TRAIN.epochs} "
               f"epochs; every loss part within rel {LOSS_RTOL:g}, the trained encoders and decoders within "
               f"rel {MODEL_RTOL:g})")
