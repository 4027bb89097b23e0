"""The arithmetic a run trains in (``train.precision``): FP32 by default, for exactness.

- ``fp32``: every matmul and convolution in FP32; on a GPU, TF32 is switched off for both
  (cuDNN's convolutions use TF32 by default in PyTorch, so this is not PyTorch's default there).
- ``tf32``: on an NVIDIA GPU, matmuls and convolutions in TF32 (10-bit mantissa inputs, FP32
  accumulation); a CUDA-only format (a run on a CPU is refused before it starts).
- ``bf16``: the loss's forward pass under ``torch.autocast`` to bfloat16 (CPU or GPU); parameters,
  optimiser state and gradients stay FP32, and the backward pass runs outside autocast.

Evaluation, curves and validation always run in FP32. docs/performance.md states what each
choice changes in the numbers.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Literal

import torch

Precision = Literal["fp32", "tf32", "bf16"]
NEEDS_CUDA: frozenset[str] = frozenset({"tf32"})


@contextlib.contextmanager
def training_precision(precision: Precision, device: torch.device) -> Iterator[None]:
    """Train in ``precision`` on ``device`` inside this block (TF32 flags restored after). One
    block per optimiser step: autocast keeps the bfloat16 copies of the weights it made until its
    block ends, so a block spanning several steps would compute every step with the first
    step's weights."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """FP32 inside a :func:`training_precision` block (a backward pass, a method's held-out check)."""
    return torch.autocast(device.type, enabled=False)
