r"""One block Krylov loop for the top singular triplets of ``W`` (SPEC §4), with a swappable stopping rule.

The basis ``Q`` (``(d, m)``, orthonormal) spans ``V0, WᵀW V0, (WᵀW)² V0, …``. Each iteration takes the Ritz
triplets from the float64 Gram of ``P = W Q`` (an ``(m, m)`` eigenproblem), **one** product with ``Wᵀ`` (the
residuals :math:`R = W^\top U - V S` of the top ``p`` pairs) and **one** with ``W`` (the new block: those residuals
orthonormalised against ``Q``). What "converged" means and how many pairs to refine is the :class:`StoppingRule`'s
business, the way ``torch._lobpcg`` lets its convergence count be swapped: :class:`ResidualRule` asks for ``k``
small residuals (:func:`~spikelearn.functional.spectral.top_singular_triplets`), the engine's outlier rule asks for
the outliers and the window of bulk values their edge is fitted from
(:mod:`spikelearn.functional.spectrum`).

Symbols: ``W`` ``(N, d)``, ``Q`` ``(d, m)``, ``P = W Q`` ``(N, m)``, ``G = PᵀP`` ``(m, m)`` (float64), Ritz values
:math:`\theta_1 \ge \theta_2 \ge \dots` (square roots of the eigenvalues of ``G``), residual
:math:`r_i = \|W^\top u_i - \theta_i v_i\|`.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor

__all__ = ["KrylovResult", "ResidualRule", "SingularTriplets", "StoppingRule", "block_krylov"]


class SingularTriplets(NamedTuple):
    """Top singular triplets.

    Attributes:
        values: singular values, descending, shape ``(k,)``.
        left: left vectors, shape ``(N, k)``.
        right: right vectors, shape ``(d, k)``.
        residuals: :math:`\\|W^\\top u_i - s_i v_i\\| / s_1`, shape ``(k,)``.
        iterations: Krylov iterations run.
        matvecs: columns multiplied by ``W`` or ``W^T`` in total.
        converged: whether the stopping rule was met within ``max_iters``.
    """

    values: Tensor
    left: Tensor
    right: Tensor
    residuals: Tensor
    iterations: int
    matvecs: int
    converged: bool


class KrylovResult(NamedTuple):
    """What :func:`block_krylov` leaves: the refined pairs and the basis they came from.

    Attributes:
        triplets: the ``p`` refined (checked) pairs, in ``W``'s dtype.
        ritz_values: every Ritz value of the final basis, descending, float64, shape ``(m,)``.
        basis: ``Q``, shape ``(d, m)``.
        products: ``P = W Q``, shape ``(N, m)``.
        gram: ``PᵀP`` in float64, shape ``(m, m)``.
        extra_products: :math:`W^\\top` ``extra_left`` (``(d, r)``), or ``None``.
        warm_vectors: the top ``p + warm_extra`` Ritz vectors ``(d, ·)``: a start block for the next call.
    """

    triplets: SingularTriplets
    ritz_values: Tensor
    basis: Tensor
    products: Tensor
    gram: Tensor
    extra_products: Tensor | None
    warm_vectors: Tensor


class StoppingRule(Protocol):
    """When :func:`block_krylov` stops, and how many top pairs it refines (a rule may keep state between calls)."""

    def n_check(self, ritz_values: Tensor) -> int:
        """How many top pairs to refine, given every Ritz value ``(m,)`` (float64, descending) of this iteration."""
        ...

    def stop(self, ritz_values: Tensor, residuals: Tensor, iteration: int) -> bool:
        """Whether to stop, given the Ritz values ``(m,)`` and the refined pairs' residuals ``(p,)`` relative to
        :math:`\\theta_1` (float64), on iteration ``iteration`` (from 1)."""
        ...


class ResidualRule:
    """Stop when the top ``k`` of ``k + oversample`` refined pairs have relative residual ``<= tol``.

    Example:
        >>> rule = ResidualRule(k=2, tol=1e-3, oversample=4)
        >>> rule.n_check(torch.ones(10)), rule.stop(torch.ones(10), torch.tensor([1e-4, 1e-4, 1.0]), 1)
        (6, True)
    """

    def __init__(self, k: int, tol: float, oversample: int = 8) -> None:
        self.k, self.tol, self.oversample = k, tol, oversample

    def n_check(self, ritz_values: Tensor) -> int:
        return self.k + self.oversample

    def stop(self, ritz_values: Tensor, residuals: Tensor, iteration: int) -> bool:
        return bool((residuals[: self.k] <= self.tol).all())


def mm(W: Tensor, X: Tensor) -> Tensor:
    """``W @ X`` for a thin ``X`` ``(d, r)``; on the CPU as ``(Xᵀ Wᵀ)ᵀ`` when ``r`` is not a multiple of 8, where
    MKL's plain product takes a slow path (BENCHMARKS.md)."""
    if W.device.type == "cpu" and X.shape[1] % 8:
        return (X.T @ W.T).T
    return W @ X


def rmm(W: Tensor, X: Tensor) -> Tensor:
    """``Wᵀ @ X`` for a thin ``X`` ``(N, r)``; on the CPU as the row block ``(Xᵀ W)ᵀ``, faster than MKL's
    transposed product at every width measured (BENCHMARKS.md)."""
    if W.device.type == "cpu":
        return (X.T @ W).T
    return W.T @ X


def gram(P: Tensor) -> Tensor:
    """``PᵀP`` in float64, ``(m, m)``, symmetric by construction."""
    P64 = P.to(torch.float64)
    G = P64.T @ P64
    return 0.5 * (G + G.T)


def orthonormalize(X: Tensor, Q: Tensor | None, ref: float) -> Tensor:
    """Orthonormal basis of ``X`` ``(d, b)`` minus its projection on ``Q`` ``(d, m)`` (two passes), small columns
    (relative to ``ref``) dropped."""
    if Q is not None and Q.shape[1] > 0:
        X = X - Q @ (Q.T @ X)
        X = X - Q @ (Q.T @ X)
    if X.shape[1] == 0:
        return X
    Qx, R = torch.linalg.qr(X)
    diag = torch.abs(torch.diagonal(R))
    keep = diag > 100 * torch.finfo(X.dtype).eps * max(ref, 1e-300)
    Qx = Qx[:, keep]
    if Q is not None and Q.shape[1] > 0 and Qx.shape[1] > 0:
        # X is orthogonal to Q after two passes; QR's R^{-1} can carry that rounding back into span(Q) only
        # through a column nearly dependent on the others (|R_jj| << its norm): re-project once more then
        ratio = diag[keep] / torch.linalg.vector_norm(X, dim=0)[keep]
        if bool((ratio < 1e-3).any()):
            Qx = Qx - Q @ (Q.T @ Qx)
            Qx, _ = torch.linalg.qr(Qx)
        # QR's error on a column is ~eps / (|R_jj| / its norm): in float32 a column just above that test can still
        # come back with a part in span(Q) (measured 6e-3 when a block of residuals had rank 25 of 32), and the Ritz
        # values of a basis that is not orthonormal exceed s_1. Check the weakly independent columns (ratio < 0.1;
        # the others are within ~eps / 0.1 by that bound), and repair only then: a column that keeps less than half
        # its length once projected lay in span(Q) (a direction QR completed from rounding): drop it
        weak = ratio < 0.1
        tol = 1e3 * torch.finfo(X.dtype).eps
        if bool(weak.any()) and float((Q.T @ Qx[:, weak]).abs().max()) > tol:
            Qx = Qx - Q @ (Q.T @ Qx)
            Qx = Qx[:, torch.linalg.vector_norm(Qx, dim=0) > 0.5]
            if Qx.shape[1]:
                Qx = Qx - Q @ (Q.T @ Qx)
                Qx, _ = torch.linalg.qr(Qx)
    return Qx


def block_krylov(
    W: Tensor,
    V0: Tensor,
    rule: StoppingRule,
    *,
    max_iters: int,
    max_basis: int,
    extra_left: Tensor | None = None,
    warm_extra: int = 0,
) -> KrylovResult:
    r"""Block Krylov (block Lanczos with Rayleigh–Ritz and full reorthogonalisation) on :math:`W^\top W`.

    Stops when ``rule.stop`` says so, when the basis spans :math:`\mathbb R^d` (then it is exact), or after
    ``max_iters`` iterations (``converged`` is then ``False``). The Gram ``G`` grows by blocks (``O(N m b)`` an
    iteration, not ``O(N m^2)``); past ``max_basis`` columns the basis restarts on its top half of Ritz vectors.

    Args:
        W: matrix, shape ``(N, d)``, float32 or float64.
        V0: start block, shape ``(d, b)``.
        rule: the :class:`StoppingRule`.
        max_iters: iteration cap.
        max_basis: basis width at which a thick restart happens.
        extra_left: columns ``(N, r)`` whose products :math:`W^\top` ``extra_left`` ride along the first ``Wᵀ``
            product; after the first iteration :math:`W^\top` ``extra_left[:, :1]`` also joins the basis.
        warm_extra: Ritz vectors kept beyond the refined pairs in ``warm_vectors``.

    Returns:
        :class:`KrylovResult`.

    Example:
        >>> W = torch.diag(torch.arange(20, 0, -1, dtype=torch.float64))
        >>> V0 = torch.randn(20, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> out = block_krylov(W, V0, ResidualRule(k=2, tol=1e-8, oversample=2), max_iters=50, max_basis=40)
        >>> [round(v) for v in out.triplets.values[:2].tolist()]
        [20, 19]
    """
    d = V0.shape[0]
    Q = orthonormalize(V0, None, float(torch.linalg.vector_norm(V0, dim=0).max()))  # (d, m)
    P = mm(W, Q)  # (N, m)
    matvecs = Q.shape[1]
    G = gram(P)  # (m, m)
    extra_out: Tensor | None = None
    it = 0
    while True:
        it += 1
        evals, evecs = torch.linalg.eigh(G)
        evals, evecs = evals.flip(0).clamp_min(0.0), evecs.flip(1)
        S_all = evals.sqrt()  # (m,)
        p = max(1, min(rule.n_check(S_all), Q.shape[1]))
        S = S_all[:p]
        Y = evecs[:, :p].to(P.dtype)  # (m, p)
        safe = torch.where(S > 0, S, torch.ones_like(S)).to(P.dtype)
        U, V = P @ Y / safe, Q @ Y  # (N, p), (d, p)
        cols = [U] if extra_left is None or extra_out is not None else [U, extra_left]
        Z = rmm(W, torch.cat(cols, dim=1))  # (d, p [+ r]): the one W^T product
        matvecs += Z.shape[1]
        if len(cols) == 2:
            extra_out, Z = Z[:, p:], Z[:, :p]
        R = Z - V * S.to(P.dtype)  # (d, p)
        res_abs = torch.linalg.vector_norm(R, dim=0).to(torch.float64)  # (p,)
        s1 = float(S_all[0]) if float(S_all[0]) > 0 else 1.0
        res = res_abs / s1
        done = rule.stop(S_all, res, it) or Q.shape[1] >= d
        Qn = None if done or it >= max_iters else orthonormalize(R, Q, float(res_abs.max()) + 1e-30)
        if Qn is None or Qn.shape[1] == 0:  # stopped, out of iterations, or an invariant subspace (converged)
            if Qn is not None:
                res, done = torch.zeros_like(res), True
            trip = SingularTriplets(S.to(P.dtype), U, V, res.to(P.dtype), it, matvecs, bool(done))
            warm = Q @ evecs[:, : min(Q.shape[1], p + warm_extra)].to(Q.dtype)
            return KrylovResult(trip, S_all, Q, P, G, extra_out, warm)
        if it == 1 and extra_out is not None:  # W^T extra_left[:, 0] joins the basis once, riding this W product
            Wt_a = extra_out[:, :1]
            Qa_n = orthonormalize(Wt_a, torch.cat([Q, Qn], dim=1), float(torch.linalg.vector_norm(Wt_a)) + 1e-30)
            Qn = torch.cat([Qn, Qa_n], dim=1)
        if Q.shape[1] + Qn.shape[1] >= d:  # the basis would span R^d: take it exactly (orthogonality would be lost)
            Q = torch.eye(d, dtype=W.dtype, device=W.device)
            P = W.clone()
            G = gram(P)
            matvecs += d
            continue
        if Q.shape[1] + Qn.shape[1] > max_basis:  # thick restart on the top half of the Ritz vectors
            Yk = evecs[:, : max(p, max_basis // 2)]
            G = Yk.T @ G @ Yk  # the Gram of P Yk (diagonal up to rounding)
            Yk = Yk.to(P.dtype)
            Q, P = Q @ Yk, P @ Yk
            Qn = orthonormalize(Qn, Q, 1.0)
        Pn = mm(W, Qn)  # (N, b): the one W product
        matvecs += Qn.shape[1]
        # (m, b); convert, then transpose: a transposed conversion is a strided copy
        cross = P.to(torch.float64).T @ Pn.to(torch.float64)
        G = torch.cat([torch.cat([G, cross], dim=1), torch.cat([cross.T, gram(Pn)], dim=1)], dim=0)
        Q = torch.cat([Q, Qn], dim=1)
        P = torch.cat([P, Pn], dim=1)
