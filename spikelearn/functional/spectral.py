r"""Singular values of a weight (SPEC §4): the top ``k`` triplets by warm-startable block Krylov, the full spectrum.

Symbols: ``W`` of shape ``(N, d)`` (rows are neurons), ``c = N / d``; singular values
:math:`s_1 \ge s_2 \ge \dots`, left vectors :math:`u_i \in \mathbb R^N`, right vectors :math:`v_i \in \mathbb R^d`.

Everything runs on ``W``'s device and dtype (float32 or float64); only small results are moved to the CPU. The
engine that analyses a snapshot (outliers, two-layer theory, alignments) is :mod:`spikelearn.functional.engine`;
its stages live in :mod:`~spikelearn.functional.spectrum`, :mod:`~spikelearn.functional.outliers`,
:mod:`~spikelearn.functional.two_layer` and :mod:`~spikelearn.functional.alignment`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikelearn.functional._measure import check_k, check_matrix, frobenius_sq, tf32_off
from spikelearn.functional.krylov import ResidualRule, SingularTriplets, block_krylov

__all__ = ["random_start", "singular_values_full", "top_singular_triplets"]


def random_start(W: Tensor, width: int, warm_start: Tensor | None, seed: int) -> Tensor:
    """A start block ``(d, k' + width)``: ``warm_start`` ``(d, k')`` (if any) then ``width`` seeded Gaussian columns."""
    d = W.shape[1]
    g = torch.Generator(device=W.device).manual_seed(seed)
    rand = torch.randn(d, width, generator=g, device=W.device, dtype=W.dtype)  # (d, width)
    if warm_start is None:
        return rand
    return torch.cat([warm_start.to(device=W.device, dtype=W.dtype), rand], dim=1)


def check_warm(warm_start: Tensor | None, d: int) -> None:
    """A ``ValueError`` unless ``warm_start`` is ``None`` or of shape ``(d, k')``."""
    if warm_start is not None and (warm_start.ndim != 2 or warm_start.shape[0] != d):
        raise ValueError(f"`warm_start` must have shape ({d}, k'), got {tuple(warm_start.shape)}.")


def top_singular_triplets(
    W: Tensor,
    k: int,
    *,
    warm_start: Tensor | None = None,
    tol: float = 1e-4,
    max_iters: int = 300,
    oversample: int = 8,
    seed: int = 0,
) -> SingularTriplets:
    r"""Top-``k`` singular triplets of ``W`` by warm-startable block Krylov iteration.

    Builds an orthonormal basis ``Q`` of the block Krylov space of :math:`W^\top W` from a
    start block (``warm_start`` plus ``oversample`` random columns), takes Ritz triplets
    from :math:`WQ`, and stops when every one of the ``k`` pairs has a small residual:

    .. math:: \frac{\|W^\top u_i - s_i v_i\|}{s_1} \le \mathrm{tol}, \qquad
              W v_i = s_i u_i \text{ exactly}.

    Value errors scale like the residual squared over the gap. Runs on ``W``'s device and dtype.

    Args:
        W: matrix, shape ``(N, d)``, float32 or float64, any aspect ratio.
        k: number of triplets, ``1 <= k <= min(N, d)``.
        warm_start: previous right vectors, shape ``(d, k')``.
        tol: relative residual tolerance.
        max_iters: iteration cap (``converged`` is ``False`` if it is hit).
        oversample: extra columns in the block.
        seed: seed of the random start columns.

    Returns:
        ``SingularTriplets(values, left, right, residuals, iterations, matvecs, converged)``.

    Raises:
        ValueError: on a non-2-D or non-finite ``W``, ``k`` out of range, a bad ``warm_start``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> W = torch.randn(300, 200, generator=g, dtype=torch.float64)
        >>> t = top_singular_triplets(W, 3)
        >>> torch.allclose(t.values, torch.linalg.svdvals(W)[:3])
        True
    """
    check_matrix(W)
    frobenius_sq(W)
    N, d = W.shape
    k = check_k(k, N, d)
    check_warm(warm_start, d)
    if not tol > 0:
        raise ValueError(f"`tol` must be positive, got {tol!r}.")
    width = min(d, k + oversample)
    V0 = random_start(W, oversample if warm_start is not None else width, warm_start, seed)
    p = min(k + oversample, d)
    with tf32_off(W.device), torch.no_grad():
        trip = block_krylov(
            W, V0, ResidualRule(k, tol, p - k), max_iters=max_iters, max_basis=max(4 * p, p + 64)
        ).triplets
    return SingularTriplets(
        trip.values[:k], trip.left[:, :k], trip.right[:, :k], trip.residuals[:k],
        trip.iterations, trip.matvecs, trip.converged,
    )


def singular_values_full(W: Tensor) -> Tensor:
    r"""All ``min(N, d)`` singular values, descending, for histograms (expensive).

    Eigenvalues of the smaller Gram matrix in float64:

    .. math:: s_i = \sqrt{\lambda_i(W^\top W)} \ (d \le N), \qquad
              s_i = \sqrt{\lambda_i(W W^\top)} \ (N < d).

    Args:
        W: matrix, shape ``(N, d)``.

    Returns:
        float64 tensor of shape ``(min(N, d),)`` on ``W``'s device.

    Raises:
        ValueError: on a non-2-D or non-finite ``W``.

    Example:
        >>> singular_values_full(torch.diag(torch.tensor([3.0, 1.0, 2.0]))).tolist()
        [3.0, 2.0, 1.0]
    """
    check_matrix(W)
    frobenius_sq(W)
    W64 = W.to(torch.float64)
    G = W64.T @ W64 if W.shape[1] <= W.shape[0] else W64 @ W64.T
    return torch.linalg.eigvalsh(G).flip(0).clamp_min(0.0).sqrt()
