"""Speed sections: the harness against the minimal loop, threads, seed batching and torch.compile."""

from __future__ import annotations

import copy
import math
import os
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .common import (DEFAULT_THREADS, THROUGHPUT_TARGET, Clock, Settings, compare, fused_adam_supported, median,
                     rotate, timed)
from .loops import MinimalVAE, harness_epochs, harness_method, interleaved_with_harness, minimal_epoch


def bench_throughput(settings: Settings, x: Tensor, device: torch.device, clock: Clock) -> dict[str, Any]:
    """Harness vs minimal loop (and both with fused Adam), per preset: ``4 * repeats``
    short epochs of ``throughput_examples`` each, interleaved, so that every comparison is made
    within a second or so and a changing machine load hits both arms alike."""
    x = x[: settings.throughput_examples]
    shape, n, bs = tuple(x.shape[1:]), x.shape[0], settings.batch_size
    repeats = 4 * settings.repeats
    in_dim = math.prod(shape)
    fused = fused_adam_supported(device)
    out: dict[str, Any] = {"batch_size": bs, "examples_per_epoch": n, "epochs_timed": repeats,
                           "target": THROUGHPUT_TARGET, "fused_adam_supported": fused, "presets": {}}
    for preset in settings.presets:
        method = harness_method(preset, shape, device)
        minimal = MinimalVAE.like(method.model, preset, in_dim)
        opt = torch.optim.Adam(minimal.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(2)
        arms: dict[str, Callable[[int], Any]] = {
            "minimal": lambda _r, m=minimal, o=opt, g=gen: minimal_epoch(m, o, x, bs, g)}
        if fused:
            method_f = harness_method(preset, shape, device)
            epoch_f = harness_epochs(method_f, x, bs, torch.Generator().manual_seed(1), fused_adam=True)
            arms["harness_fused_adam"] = lambda _r, f=epoch_f: f()
        if fused:
            minimal_f = MinimalVAE.like(method.model, preset, in_dim)
            opt_f = torch.optim.Adam(minimal_f.parameters(), lr=1e-3, fused=True)
            gen_f = torch.Generator().manual_seed(2)
            arms["minimal_fused_adam"] = lambda _r, m=minimal_f, o=opt_f, g=gen_f: minimal_epoch(m, o, x, bs, g)
        times = interleaved_with_harness(method, x, bs, repeats, clock, arms)
        entry: dict[str, Any] = {
            "hidden": list(preset.hidden), "latent_dim": preset.latent_dim,
            "parameters": sum(p.numel() for p in method.parameters()),
            "epoch_s": {k: median(timed(v)) for k, v in times.items()},
            "examples_per_s": {k: n / median(timed(v)) for k, v in times.items()},
            "times_s": times,
        }
        entry["harness_vs_minimal"] = compare(times["harness"], times["minimal"])
        entry["meets_target"] = entry["harness_vs_minimal"]["ratio"] >= THROUGHPUT_TARGET
        if fused:
            entry["fused_adam_vs_minimal"] = compare(times["minimal_fused_adam"], times["minimal"])
        if "harness_fused_adam" in times:
            entry["harness_fused_adam_vs_harness"] = compare(times["harness_fused_adam"], times["harness"])
        out["presets"][preset.name] = entry
    return out


def bench_threads(settings: Settings, x: Tensor, device: torch.device, clock: Clock) -> dict[str, Any]:
    """CPU only: the minimal loop at 1 thread against torch's thread count, interleaved. On a
    machine shared with other jobs, OpenMP threads that spin-wait for each other can make several
    threads far slower than one (see OMP_WAIT_POLICY); this section makes that visible."""
    threads = max(DEFAULT_THREADS, torch.get_num_threads())
    out: dict[str, Any] = {"threads": threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                           "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if device.type != "cpu" or threads < 2:
        out["skipped"] = "needs the CPU and more than one torch thread"
        return out
    preset = settings.presets[0]
    bs, in_dim = settings.batch_size, math.prod(x.shape[1:])
    subset = x[: min(x.shape[0], 10 * bs)]  # short: several threads can be very slow here
    torch.manual_seed(0)
    model = MinimalVAE(in_dim, preset.hidden, preset.latent_dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(7)
    times: dict[str, list[float]] = {"1": [], str(threads): []}
    before = torch.get_num_threads()
    try:
        for r in range(settings.repeats + 1):
            for count in rotate([1, threads], r):
                torch.set_num_threads(count)
                t0 = clock()
                minimal_epoch(model, opt, subset, bs, gen)
                times[str(count)].append(clock() - t0)
    finally:
        torch.set_num_threads(before)
    out.update({"model": preset.name, "examples": subset.shape[0],
                "epoch_s": {k: median(timed(v)) for k, v in times.items()},
                "threads_vs_one": compare(times[str(threads)], times["1"]), "times_s": times})
    return out


def batched_step_fn(template: nn.Module, randomness: str = "different"):
    """``loss(params, x [S, B, ...]) -> [S]``: the minimal loss vmapped over stacked params
    (``randomness="different"``: each seed draws its own noise)."""
    from torch.func import functional_call, vmap

    base = copy.deepcopy(template).to("meta")

    def one(params, xb):
        return functional_call(base, params, (xb,))

    return vmap(one, in_dims=(0, 0), randomness=randomness)


def bench_seed_batching(settings: Settings, x: Tensor, device: torch.device, clock: Clock) -> dict[str, Any]:
    """S seeds of one config as one model (torch.func.stack_module_state + vmap; one Adam over
    the stacked parameters, which is S independent Adams since Adam is elementwise) against the
    S minimal loops run one after another. Each seed has its own batch order and noise."""
    from torch.func import stack_module_state

    preset = settings.presets[0]
    x = x[: settings.throughput_examples]
    s, bs, n = settings.seed_batch, settings.batch_size, x.shape[0]
    in_dim = math.prod(x.shape[1:])
    models = []
    for seed in range(s):
        torch.manual_seed(seed)
        models.append(MinimalVAE(in_dim, preset.hidden, preset.latent_dim).to(device))
    params, _buffers = stack_module_state(models)
    leaves = list(params.values())
    opt_b = torch.optim.Adam(leaves, lr=1e-3)
    loss_fn = batched_step_fn(models[0])
    gens = [torch.Generator().manual_seed(10 + i) for i in range(s)]

    def batched_epoch(_r) -> float:
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)  # [S, N]
        total = torch.zeros(s, device=device)
        for start in range(0, n, bs):
            batch = x[perms[:, start:start + bs]]  # [S, B, *shape]
            losses = loss_fn(params, batch)
            opt_b.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt_b.step()
            total += losses.detach() * batch.shape[1]
        return float(total.sum()) / (n * s)

    seq_models = [copy.deepcopy(m) for m in models]
    seq_opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in seq_models]
    seq_gens = [torch.Generator().manual_seed(10 + i) for i in range(s)]

    def sequential(_r) -> None:
        for m, o, g in zip(seq_models, seq_opts, seq_gens):
            minimal_epoch(m, o, x, bs, g)

    times: dict[str, list[float]] = {"batched": [], "sequential": []}
    arms = {"batched": batched_epoch, "sequential": sequential}
    for r in range(2 * settings.repeats + 1):
        for name in rotate(list(arms), r):
            t0 = clock()
            arms[name](r)
            times[name].append(clock() - t0)
    speed = compare(times["batched"], times["sequential"])
    return {"model": preset.name, "seeds": s, "batch_size": bs, "examples_per_epoch": n,
            "epoch_s": {k: median(timed(v)) for k, v in times.items()},
            "speedup": speed, "times_s": times,
            "note": "speedup = time of S sequential minimal epochs / one batched epoch of S seeds"}


def bench_compile(settings: Settings, x: Tensor, device: torch.device, clock: Clock) -> dict[str, Any]:
    """torch.compile of the minimal model's forward (loss) in each mode against eager."""
    preset = settings.presets[0]
    bs = settings.batch_size
    in_dim = math.prod(x.shape[1:])
    out: dict[str, Any] = {"model": preset.name, "batch_size": bs, "modes": {}}
    for mode in settings.compile_modes:
        torch.manual_seed(0)
        eager = MinimalVAE(in_dim, preset.hidden, preset.latent_dim).to(device)
        compiled_module = copy.deepcopy(eager)
        opt_e = torch.optim.Adam(eager.parameters(), lr=1e-3)
        opt_c = torch.optim.Adam(compiled_module.parameters(), lr=1e-3)
        try:
            compiled = torch.compile(compiled_module, mode=mode)
            t0 = clock()
            minimal_epoch(compiled, opt_c, x[: 4 * bs], bs, torch.Generator().manual_seed(0))  # compile
            compile_s = clock() - t0
        except Exception as exc:  # no compiler, unsupported backend...
            out["modes"][mode] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            continue
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        arms = {"eager": (eager, opt_e, torch.Generator().manual_seed(6)),
                "compiled": (compiled, opt_c, torch.Generator().manual_seed(6))}
        for r in range(settings.repeats + 1):
            for name in rotate(list(arms), r):
                m, o, g = arms[name]
                t0 = clock()
                minimal_epoch(m, o, x, bs, g)
                times[name].append(clock() - t0)
        out["modes"][mode] = {"ok": True, "compile_s": compile_s,
                              "epoch_s": {k: median(timed(v)) for k, v in times.items()},
                              "compiled_vs_eager": compare(times["compiled"], times["eager"]), "times_s": times}
    return out
