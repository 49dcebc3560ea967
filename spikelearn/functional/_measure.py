"""Settings shared by everything that measures a weight (spectral engine, density estimate)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def tf32_off(device: torch.device) -> Iterator[None]:
    """Disable TF32 matmuls on CUDA while measuring (restored afterwards): TF32 suits training, not measuring."""
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
