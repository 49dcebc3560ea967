r"""Alignments and the order-k decomposition (SPEC §4): what the outliers learned.

* right vectors against the target directions: :math:`\langle v_i, \beta_j\rangle^2` and the energy of
  :math:`\beta_j` captured by the outlier subspace (:func:`outlier_alignment`);
* left vectors against the Gram–Schmidt basis of :math:`a, a^{\circ 2}, \dots` (:func:`left_alignment`);
* an update :math:`W - W_{prev}` fitted on the order-k terms :math:`a^{\circ(k+1)}\rho_k^\top`
  (:func:`order_decomposition`, :func:`order_fit` from cached products).

Symbols: ``W`` ``(N, d)``, ``a`` ``(N,)``, ``B`` ``(d, r)`` orthonormal, ``K`` the highest order,
``A = [a, a^{∘2}, …, a^{∘(K+1)}]`` ``(N, K+1)`` and ``Q_a`` its Gram–Schmidt basis.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from spikelearn.functional._measure import check_matrix, frobenius_sq
from spikelearn.functional.krylov import rmm
from spikelearn.functional.theory import hadamard_power_basis

__all__ = ["Alignment", "OrderDecomposition", "left_alignment", "order_decomposition", "order_fit",
           "outlier_alignment"]


class Alignment(NamedTuple):
    """Squared overlaps of outlier right vectors with target directions.

    Attributes:
        overlaps: :math:`\\langle v_i, \\beta_j\\rangle^2`, shape ``(n_out, r)``.
        captured_energy: :math:`\\sum_i \\langle v_i, \\beta_j\\rangle^2`, shape ``(r,)``.
        baseline: random baseline ``n_out / d``.
    """

    overlaps: Tensor
    captured_energy: Tensor
    baseline: float


class OrderDecomposition(NamedTuple):
    """Least-squares order-k decomposition of an update.

    Attributes:
        rho: coefficients :math:`\\rho_k`, shape ``(K+1, d)`` (float64).
        strengths: :math:`\\|\\rho_k\\|\\,\\|a^{\\circ(k+1)}\\|`, shape ``(K+1,)``.
        alignment: :math:`\\langle\\hat\\rho_k, \\beta_j\\rangle^2`, shape ``(K+1, r)``, or
            ``None`` without ``B``.
    """

    rho: Tensor
    strengths: Tensor
    alignment: Tensor | None


def outlier_alignment(V: Tensor, B: Tensor) -> Alignment:
    r"""Squared overlaps of right vectors with target directions, and captured energy.

    .. math:: A_{ij} = \langle v_i, \beta_j\rangle^2, \qquad
              E_j = \sum_i A_{ij}, \qquad \text{baseline} = n_{out}/d.

    Args:
        V: outlier right vectors, shape ``(d, n_out)``.
        B: orthonormal directions, shape ``(d, r)``.

    Returns:
        ``Alignment(overlaps (n_out, r), captured_energy (r,), baseline)``.

    Raises:
        ValueError: if the first dimensions differ.

    Example:
        >>> al = outlier_alignment(torch.eye(4)[:, :1], torch.eye(4)[:, :2])
        >>> al.overlaps.tolist(), al.baseline
        ([[1.0, 0.0]], 0.25)
    """
    if V.ndim != 2 or B.ndim != 2 or V.shape[0] != B.shape[0]:
        raise ValueError(
            f"`V` (d, n_out) and `B` (d, r) must share d, got {tuple(V.shape)} and {tuple(B.shape)}."
        )
    overlaps = (V.T @ B.to(V.dtype)) ** 2  # (n_out, r)
    return Alignment(overlaps, overlaps.sum(dim=0), V.shape[1] / V.shape[0])


def left_alignment(U: Tensor, a: Tensor, max_order: int = 4) -> Tensor:
    r"""Squared overlaps of left vectors with the Gram–Schmidt basis of :math:`a, a^{\circ2}, \dots`.

    .. math:: L_{ik} = \langle u_i, q_k\rangle^2, \qquad
              [q_0, \dots, q_K] = \mathrm{GS}(a, a^{\circ 2}, \dots, a^{\circ(K+1)}).

    Args:
        U: left vectors, shape ``(N, n)``.
        a: second-layer weights, shape ``(N,)``.
        max_order: ``K``.

    Returns:
        float64 tensor of shape ``(n, K+1)``.

    Raises:
        ValueError: on inconsistent shapes.

    Example:
        >>> a = torch.tensor([1.0, -1.0, 2.0, 0.5])
        >>> L = left_alignment((a / a.norm())[:, None], a, 1)
        >>> [round(x, 6) for x in L[0].tolist()]
        [1.0, 0.0]
    """
    if U.ndim != 2 or a.ndim != 1 or U.shape[0] != a.shape[0]:
        raise ValueError(
            f"`U` (N, n) and `a` (N,) must share N, got {tuple(U.shape)} and {tuple(a.shape)}."
        )
    _, Q = hadamard_power_basis(a, max_order)
    return (U.to(torch.float64).T @ Q.to(U.device)) ** 2


def order_fit(DtQ: Tensor, A: Tensor, Q: Tensor, B: Tensor | None) -> OrderDecomposition:
    r"""The order-k fit from the products :math:`\Delta W^\top Q_a` alone (what the engine caches).

    With :math:`A = Q_a R` (``A``'s columns normalised), :math:`\tilde\rho = R^{-1} Q_a^\top \Delta W`.

    Args:
        DtQ: :math:`\Delta W^\top Q_a`, shape ``(d, K+1)``.
        A: the Hadamard powers ``(N, K+1)`` (float64), from :func:`~spikelearn.functional.theory.hadamard_power_basis`.
        Q: their Gram–Schmidt basis ``(N, K+1)`` (float64).
        B: optional orthonormal directions ``(d, r)``.
    """
    norms = torch.linalg.vector_norm(A, dim=0)  # (K+1,)
    R = Q.T @ (A / norms)  # (K+1, K+1), upper triangular
    rho_t = torch.linalg.solve_triangular(R, DtQ.to(torch.float64).T, upper=True)  # (K+1, d)
    strengths = torch.linalg.vector_norm(rho_t, dim=1)  # (K+1,)
    rho = rho_t / norms[:, None]
    align = None
    if B is not None:
        unit = rho_t / strengths.clamp_min(1e-300)[:, None]
        align = (unit @ B.to(torch.float64)) ** 2  # (K+1, r)
    return OrderDecomposition(rho, strengths, align)


def order_decomposition(
    W: Tensor,
    a: Tensor,
    *,
    W_prev: Tensor | None = None,
    max_order: int = 4,
    B: Tensor | None = None,
) -> OrderDecomposition:
    r"""Least-squares fit of an update onto the order-k terms (SPEC §4).

    .. math:: \Delta W = W - W_{prev} \approx \sum_{k=0}^{K} a^{\circ(k+1)} \rho_k^\top,
              \quad \text{strength}_k = \|\rho_k\|\,\|a^{\circ(k+1)}\|, \quad
              \text{alignment}_{kj} = \langle \hat\rho_k, \beta_j\rangle^2.

    Only ``(K+1)`` thin products with ``W`` (and ``W_prev``) are taken; the difference is
    never formed.

    Args:
        W: weights, shape ``(N, d)``.
        a: second-layer weights, shape ``(N,)``.
        W_prev: previous weights, shape ``(N, d)``; ``None`` fits ``W`` itself.
        max_order: ``K``.
        B: optional orthonormal directions, shape ``(d, r)``.

    Returns:
        ``OrderDecomposition(rho (K+1, d), strengths (K+1,), alignment (K+1, r) | None)``.

    Raises:
        ValueError: on inconsistent shapes or non-finite input.

    Example:
        >>> a = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
        >>> rho = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> dW = torch.outer(a, rho[0]) + torch.outer(a**2, rho[1])
        >>> torch.allclose(order_decomposition(dW, a, max_order=1).rho, rho)
        True
    """
    check_matrix(W)
    frobenius_sq(W)
    N, d = W.shape
    if a.shape != (N,):
        raise ValueError(f"`a` must have shape ({N},), got {tuple(a.shape)}.")
    if W_prev is not None and W_prev.shape != W.shape:
        raise ValueError(f"`W_prev` must have shape {(N, d)}, got {tuple(W_prev.shape)}.")
    if B is not None and (B.ndim != 2 or B.shape[0] != d):
        raise ValueError(f"`B` must have shape ({d}, r), got {tuple(B.shape)}.")
    A, Q = hadamard_power_basis(a.to(W.device), max_order)
    Qw = Q.to(W.dtype)
    DtQ = rmm(W, Qw) if W_prev is None else rmm(W, Qw) - rmm(W_prev, Qw)  # (d, K+1)
    return order_fit(DtQ, A, Q, B)
