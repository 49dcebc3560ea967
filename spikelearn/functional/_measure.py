"""What everything that measures a weight shares (spectral engine, density estimate): input checks, ``||W||_F^2``,
TF32 off and a bounded CPU thread count."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor


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


@contextlib.contextmanager
def bounded_threads(threads: int | None, device: torch.device) -> Iterator[None]:
    """At most ``threads`` intra-op CPU threads inside the block, the caller's count restored on the way out (also
    on an error); ``None``, a GPU, or a caller already at or below the bound: nothing changes.

    The engine's work is many small calls (thin products, QR, ``eigh`` of ``(m, m)`` Grams) that each end in a
    barrier of the intra-op pool: on a shared CPU every barrier waits for a descheduled thread, and the analysis
    stalls while one large training GEMM does not (measured: BENCHMARKS.md). Training's own setting is untouched.
    """
    if threads is None or device.type != "cpu":
        yield
        return
    old = torch.get_num_threads()
    if old <= threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class NonFiniteError(ValueError):
    """A measured weight holds NaN or Inf (a ``ValueError``, so the CLI reports it in one line)."""


def check_matrix(W: Tensor, name: str = "W") -> None:
    """A ``ValueError`` naming ``name`` unless ``W`` is a non-empty 2-D float32 or float64 tensor."""
    if not isinstance(W, Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(W).__name__}.")
    if W.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D of shape (N, d), got shape {tuple(W.shape)}.")
    if W.dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"`{name}` must be float32 or float64, got {W.dtype} (train with precision '32-true' or '64-true', "
            "or cast it before measuring)."
        )
    if W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(f"`{name}` must be non-empty, got shape {tuple(W.shape)}.")


_PIECE = 1 << 12  # entries per float32 partial sum of ||W||_F^2


def frobenius_sq(W: Tensor, name: str = "W") -> float:
    """``||W||_F^2`` accumulated in float64 precision (one pass over ``W``, no copy of a contiguous one); a
    ``ValueError`` on NaN or Inf.

    On the CPU: float32 dot products of 4096-entry pieces (one batched product), summed exactly with
    :func:`math.fsum`; on a GPU: float32 sums of 16M-entry row blocks (tree reductions) accumulated in float64.
    A single float32 ``vector_norm`` is not enough: its error at N = 8192 moves a Marchenko–Pastur cut by many
    Tracy–Widom margins (accuracy and cost of both paths: BENCHMARKS.md). When the sum is not finite (a NaN or
    Inf, or entries whose float32 squares overflow) the blocks are summed again in float64, which tells the two
    apart.
    """
    d = max(W.shape[1], 1)
    if W.device.type == "cpu":
        flat = W.reshape(-1)
        n_pieces = flat.numel() // _PIECE
        pieces = flat[: n_pieces * _PIECE].view(n_pieces, 1, _PIECE)  # (pieces, 1, 4096)
        tail = flat[n_pieces * _PIECE :]
        fro_sq = math.fsum(torch.bmm(pieces, pieces.transpose(1, 2)).reshape(-1).tolist()) + float(tail @ tail)
    else:
        fro_sq = float(sum(block.square().sum().to(torch.float64) for block in W.split(max(1, (1 << 24) // d))))
    if math.isfinite(fro_sq):
        return fro_sq
    fro_sq = math.fsum(float(block.to(torch.float64).square().sum()) for block in W.split(max(1, (1 << 24) // d)))
    if math.isfinite(fro_sq):
        return fro_sq
    n_nan = int(torch.isnan(W).sum())
    n_inf = int(torch.isinf(W).sum())
    raise NonFiniteError(f"`{name}` must be finite, got {n_nan} NaN and {n_inf} Inf entries.")


def check_k(k: int, N: int, d: int) -> int:
    """``k`` as an int in ``[1, min(N, d)]``, or a ``ValueError`` naming the range."""
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= min(N, d):
        raise ValueError(f"`k` must be an integer in [1, min(N, d)] = [1, {min(N, d)}], got {k!r}.")
    return int(k)
