"""The peer comparison: pythae's published trainer (an optional dependency) on copies of the
harness's encoder and decoder, the same data and batch size."""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from typing import Any

import torch
from torch import Tensor, nn

from .common import Clock, Settings, compare, median, timed
from .loops import harness_method, interleaved_with_harness


def _pythae_wrappers():
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self, body: nn.Module):
            BaseEncoder.__init__(self)
            self.body = body

        def forward(self, x):
            mu, logvar = self.body(x)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self, body: nn.Module):
            BaseDecoder.__init__(self)
            self.body = body

        def forward(self, z):
            return ModelOutput(reconstruction=self.body(z))

    return Encoder, Decoder


def bench_pythae(settings: Settings, x: Tensor, device: torch.device, clock: Clock) -> dict[str, Any]:
    """pythae's BaseTrainer (as published: its DataLoader over a BaseDataset on the CPU, its
    callbacks and progress bar) on copies of the harness's encoder/decoder, interleaved with
    epochs of the harness (``4 * repeats`` epochs of ``throughput_examples``, as the throughput
    section). The ratio is pythae's examples/s over the harness's."""
    try:
        import logging

        import pythae
        from pythae.data.datasets import BaseDataset
        from pythae.models import VAE as PythaeVAE
        from pythae.models import VAEConfig
        from pythae.trainers import BaseTrainer, BaseTrainerConfig
    except Exception as exc:
        return {"available": False,
                "reason": f"pythae not importable ({type(exc).__name__}: {exc}); "
                          "pip install -r requirements-bench.txt to run this comparison"}
    version = getattr(pythae, "__version__", None)
    try:
        import importlib.metadata
        version = importlib.metadata.version("pythae")
    except Exception:
        pass
    for name in ("pythae", "pythae.trainers.base_trainer.base_trainer", "pythae.pipelines.training",
                 "pythae.models.base.base_model"):
        logging.getLogger(name).setLevel(logging.WARNING)
    preset = settings.presets[0]
    x = x[: settings.throughput_examples]
    shape, bs = tuple(x.shape[1:]), settings.batch_size
    method = harness_method(preset, shape, device)
    Encoder, Decoder = _pythae_wrappers()
    model = PythaeVAE(VAEConfig(input_dim=shape, latent_dim=preset.latent_dim, reconstruction_loss="mse"),
                      encoder=Encoder(copy.deepcopy(method.model.encoder)),
                      decoder=Decoder(copy.deepcopy(method.model.decoder)))
    x_cpu = x.detach().cpu()
    with tempfile.TemporaryDirectory(prefix="bench-pythae-") as tmp, open(os.devnull, "w") as null, \
            contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
        config = BaseTrainerConfig(output_dir=tmp, per_device_train_batch_size=bs, per_device_eval_batch_size=bs,
                                   num_epochs=1, learning_rate=1e-3, optimizer_cls="Adam",
                                   no_cuda=device.type != "cuda", seed=0)
        trainer = BaseTrainer(model=model, train_dataset=BaseDataset(x_cpu, torch.zeros(x_cpu.shape[0])),
                              training_config=config)
        trainer.prepare_training()
        times = interleaved_with_harness(method, x, bs, 4 * settings.repeats, clock,
                                          {"pythae": lambda r: trainer.train_step(r + 1)})
        # One whole published train() (1 epoch: setup, the epoch, best-model copy, final save).
        t0 = clock()
        trainer.train()
        whole = clock() - t0
    n = x.shape[0]
    return {
        "available": True, "version": version, "device": trainer.device, "model": preset.name,
        "batch_size": bs, "examples_per_epoch": x.shape[0],
        "data_on": "cpu (pythae's DataLoader; batches moved per step on cuda)",
        "loss_note": "pythae's 'mse' loss is 0.5 * SSE + KL; the harness's gaussian is SSE + KL (same work)",
        "epoch_s": {k: median(timed(v)) for k, v in times.items()},
        "examples_per_s": {k: n / median(timed(v)) for k, v in times.items()},
        "pythae_vs_harness": compare(times["pythae"], times["harness"]),
        "train_one_epoch_whole_s": whole,
        "per_run_overhead_s": whole - median(timed(times["pythae"])),
        "times_s": times,
    }
