r"""The spectral engine (SPEC §4): top-k singular triplets, bulk edge, outliers, alignments.

Symbols:

* ``W`` of shape ``(N, d)`` (rows are neurons), ``c = N / d``; singular values
  :math:`s_1 \ge s_2 \ge \dots`, left vectors :math:`u_i \in \mathbb R^N`, right vectors
  :math:`v_i \in \mathbb R^d`.
* ``a`` of shape ``(N,)``, the fixed second-layer weights; :math:`\hat a = a/\|a\|`.
* ``B`` of shape ``(d, r)``, orthonormal target directions :math:`\beta_j`.
* :math:`\hat s` the noise scale (entries of the bulk have variance :math:`\hat s^2/d`),
  :math:`\hat s_+` the data-driven bulk edge, ``m`` the Tracy–Widom margin; an outlier is
  :math:`s_i > \hat s_+ + m` ("the cut").

Everything runs on ``W``'s device and dtype (float32 or float64); only small results are
moved to the CPU. Formulas of random-matrix theory come from
:mod:`spikelearn.functional.rmt`, predictions from :mod:`spikelearn.functional.theory`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from spikelearn.functional.rmt import mp_bulk_edge, tracy_widom_margin
from spikelearn.functional.theory import (
    A_KINDS,
    _finite_n_from_projection,
    hadamard_power_basis,
    predicted_outlier_count,
)

__all__ = [
    "Alignment",
    "OrderDecomposition",
    "Outliers",
    "SingularTriplets",
    "SnapshotSummary",
    "analyze_snapshot",
    "detect_outliers",
    "left_alignment",
    "order_decomposition",
    "outlier_alignment",
    "singular_values_full",
    "top_singular_triplets",
]

_Op = Callable[[Tensor], Tensor]


class SingularTriplets(NamedTuple):
    """Top singular triplets from the block Krylov solver.

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


class Outliers(NamedTuple):
    """Outliers of a spectrum and the edge they were cut at (SPEC §4).

    Attributes:
        count: number of outliers ``n_out``.
        values: the outlier singular values, descending.
        margins: :math:`(s_i - \\text{cut})/m` per outlier.
        bulk_edge: data-driven edge :math:`\\hat s_+`.
        bulk_edge_theory: :math:`1 + \\sqrt c` (scale 1).
        bulk_edge_empirical: largest non-outlier value (``nan`` if none was computed).
        noise_scale: :math:`\\hat s`.
        margin: Tracy–Widom margin ``m``.
        cut: :math:`\\hat s_+ + m`.
    """

    count: int
    values: list[float]
    margins: list[float]
    bulk_edge: float
    bulk_edge_theory: float
    bulk_edge_empirical: float
    noise_scale: float
    margin: float
    cut: float


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


class SnapshotSummary(NamedTuple):
    """One-line summary of a snapshot ``W_t``; :meth:`to_json_dict` gives plain JSON types.

    Fields follow SPEC §4; see :func:`analyze_snapshot`. Not serialised (tensors kept for
    the next snapshot): ``right_vectors`` (shape ``(d, k)``, pass as ``warm_start``),
    ``deflated_right_vectors`` (``(d, k')``, pass as ``warm_start_deflated``; ``None``
    without ``a``) and ``a_products`` (:math:`W^\top Q_a`, ``(d, K+1)``, pass as
    ``W_prev_products`` next step, or as ``W0_products`` from the step-0 summary; ``None``
    without ``a``).
    """

    singular_values: list[float]
    bulk_edge: float
    bulk_edge_theory: float
    bulk_edge_empirical: float
    margin: float
    outliers: int
    outliers_deflated: int | None
    outlier_values: list[float]
    outlier_margins: list[float]
    predicted_outliers: int | None
    predicted_outliers_deflated: int | None
    predicted_outliers_finite_n: int | None
    alignment: list[list[float]] | None
    captured_energy: list[float] | None
    captured_energy_baseline: float | None
    left_alignment: list[list[float]] | None
    order_strengths: list[float] | None
    order_alignment: list[list[float]] | None
    theory_note: str | None
    right_vectors: Tensor
    noise_scale: float
    cut: float
    residuals: list[float]
    matvecs: int
    converged: bool
    deflated_right_vectors: Tensor | None = None
    a_products: Tensor | None = None

    def to_json_dict(self) -> dict[str, object]:
        """All fields but the tensors (``right_vectors``, ``deflated_right_vectors``,
        ``a_products``) as plain JSON types (``nan`` becomes ``None``).

        Example:
            >>> W = torch.randn(60, 80, generator=torch.Generator().manual_seed(0)) / 80**0.5
            >>> import json
            >>> sorted(json.loads(json.dumps(analyze_snapshot(W, k=4).to_json_dict())))[:3]
            ['alignment', 'bulk_edge', 'bulk_edge_empirical']
        """
        out: dict[str, object] = {}
        for name, value in zip(self._fields, self):
            if name in _TENSOR_FIELDS:
                continue
            out[name] = _plain(value)
        return out


_TENSOR_FIELDS = ("right_vectors", "deflated_right_vectors", "a_products")


def _plain(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@contextlib.contextmanager
def _tf32_off(device: torch.device) -> Iterator[None]:
    """Disable TF32 matmuls on CUDA while measuring (restored afterwards)."""
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def _check_matrix(W: Tensor, name: str = "W") -> None:
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


def _check_finite(W: Tensor, name: str = "W") -> float:
    """Return ``||W||_F^2``; raise if ``W`` has NaN or Inf (one pass in the common case)."""
    fro = float(torch.linalg.vector_norm(W))
    if math.isfinite(fro):
        return fro * fro
    n_nan = int(torch.isnan(W).sum())
    n_inf = int(torch.isinf(W).sum())
    if n_nan or n_inf:
        raise ValueError(f"`{name}` must be finite, got {n_nan} NaN and {n_inf} Inf entries.")
    fro = float(torch.linalg.vector_norm(W.to(torch.float64)))
    return fro * fro


def _check_k(k: int, N: int, d: int) -> int:
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= min(N, d):
        raise ValueError(f"`k` must be an integer in [1, min(N, d)] = [1, {min(N, d)}], got {k!r}.")
    return int(k)


def _rmm(W: Tensor, X: Tensor) -> Tensor:
    """``W.T @ X`` for a thin ``X`` (n, r); as ``(X.T @ W).T`` when ``r`` is small.

    On CPU (MKL) a transposed product with fewer than ~12 columns takes a slow path,
    measured 5-20x slower than the same product written as a row block times ``W``.
    """
    if X.shape[1] < 12:
        return (X.T.contiguous() @ W).T
    return W.T @ X


def _orthonormalize(X: Tensor, Q: Tensor | None, ref: float) -> Tensor:
    """Orthonormal basis of ``X`` minus its projection on ``Q`` (two passes), small columns dropped."""
    if Q is not None and Q.shape[1] > 0:
        X = X - Q @ (Q.T @ X)
        X = X - Q @ (Q.T @ X)
    if X.shape[1] == 0:
        return X
    Qx, R = torch.linalg.qr(X)
    keep = torch.abs(torch.diagonal(R)) > 100 * torch.finfo(X.dtype).eps * max(ref, 1e-300)
    Qx = Qx[:, keep]
    if Q is not None and Q.shape[1] > 0 and Qx.shape[1] > 0:  # re-project once more
        Qx = Qx - Q @ (Q.T @ Qx)
        Qx, _ = torch.linalg.qr(Qx)
    return Qx


def _block_krylov(
    matmul: _Op,
    rmatmul: _Op,
    V0: Tensor,
    *,
    n_check: Callable[[Tensor], int],
    stop: Callable[[Tensor, Tensor, int], bool],
    max_iters: int,
    max_basis: int,
    P0: Tensor | None = None,
) -> tuple[SingularTriplets, Tensor, Tensor]:
    """Block Krylov (block Lanczos with Rayleigh–Ritz and full reorthogonalisation) on W^T W.

    The basis ``Q`` (d, m) spans ``V0, W^T W V0, ...``; each iteration computes the Ritz
    triplets from the Gram of ``P = W Q`` (float64 eigh of an (m, m) matrix), the residuals
    ``R = W^T U - V S`` of the top ``p = n_check(S)`` pairs (one product with ``W^T``), and
    extends ``Q`` by ``R`` (one product with ``W``). Returns (triplets, Q, P).
    """
    d = V0.shape[0]
    Q = _orthonormalize(V0, None, float(torch.linalg.vector_norm(V0, dim=0).max()))  # (d, m)
    P = matmul(Q) if P0 is None else P0  # (N, m)
    matvecs = 0 if P0 is not None else Q.shape[1]
    it = 0
    while True:
        it += 1
        G = P.T.to(torch.float64) @ P.to(torch.float64)  # (m, m)
        evals, evecs = torch.linalg.eigh(G)
        evals, evecs = evals.flip(0).clamp_min(0.0), evecs.flip(1)
        S_all = evals.sqrt()  # (m,)
        p = max(1, min(n_check(S_all), Q.shape[1]))
        S = S_all[:p]
        Y = evecs[:, :p].to(P.dtype)  # (m, p)
        safe = torch.where(S > 0, S, torch.ones_like(S)).to(P.dtype)
        U = (P @ Y) / safe  # (N, p)
        V = Q @ Y  # (d, p)
        Z = rmatmul(U)  # (d, p)
        matvecs += p
        R = Z - V * S.to(P.dtype)  # (d, p)
        res_abs = torch.linalg.vector_norm(R, dim=0).to(torch.float64)  # (p,)
        s1 = float(S_all[0]) if float(S_all[0]) > 0 else 1.0
        res = res_abs / s1
        exhausted = Q.shape[1] >= d
        done = stop(S_all, res, it) or exhausted
        if done or it >= max_iters:
            trip = SingularTriplets(S.to(P.dtype), U, V, res.to(P.dtype), it, matvecs, bool(done))
            return trip, Q, P
        Qn = _orthonormalize(R, Q, float(res_abs.max()) + s1 * 1e-30)  # (d, b)
        if Qn.shape[1] == 0:
            trip = SingularTriplets(S.to(P.dtype), U, V, res.to(P.dtype), it, matvecs, True)
            return trip, Q, P
        if Q.shape[1] + Qn.shape[1] > max_basis:  # thick restart on the top Ritz vectors
            keep = max(p, max_basis - Qn.shape[1])
            Yk = evecs[:, :keep].to(P.dtype)
            Q, P = Q @ Yk, P @ Yk
            Qn = _orthonormalize(Qn, Q, 1.0)
        Pn = matmul(Qn)  # (N, b)
        matvecs += Qn.shape[1]
        Q = torch.cat([Q, Qn], dim=1)
        P = torch.cat([P, Pn], dim=1)


def _start_block(W: Tensor, width: int, warm_start: Tensor | None, seed: int) -> Tensor:
    d = W.shape[1]
    g = torch.Generator(device=W.device).manual_seed(seed)
    rand = torch.randn(d, width, generator=g, device=W.device, dtype=W.dtype)  # (d, width)
    if warm_start is None:
        return rand
    return torch.cat([warm_start.to(device=W.device, dtype=W.dtype), rand], dim=1)


def _check_warm(warm_start: Tensor | None, d: int) -> None:
    if warm_start is not None and (warm_start.ndim != 2 or warm_start.shape[0] != d):
        raise ValueError(
            f"`warm_start` must have shape ({d}, k'), got {tuple(warm_start.shape)}."
        )


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
    _check_matrix(W)
    _check_finite(W)
    N, d = W.shape
    k = _check_k(k, N, d)
    _check_warm(warm_start, d)
    if not tol > 0:
        raise ValueError(f"`tol` must be positive, got {tol!r}.")
    width = min(d, k + oversample)
    V0 = _start_block(W, oversample if warm_start is not None else width, warm_start, seed)
    p = min(k + oversample, d)
    with _tf32_off(W.device), torch.no_grad():
        trip, _, _ = _block_krylov(
            lambda X: W @ X,
            lambda X: _rmm(W, X),
            V0,
            n_check=lambda S: p,
            stop=lambda S, res, it: bool((res[:k] <= tol).all()),
            max_iters=max_iters,
            max_basis=max(4 * p, p + 64),
        )
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
    _check_matrix(W)
    _check_finite(W)
    W64 = W.to(torch.float64)
    G = W64.T @ W64 if W.shape[1] <= W.shape[0] else W64 @ W64.T
    return torch.linalg.eigvalsh(G).flip(0).clamp_min(0.0).sqrt()


def detect_outliers(
    values: Sequence[float] | Tensor,
    *,
    N: int,
    d: int,
    frobenius_sq: float,
    quantile: float = 0.995,
) -> Outliers:
    r"""Data-driven bulk edge and outliers from the top singular values (SPEC §4).

    Candidates are found self-consistently (monotone fixed point from ``n = 0``): the noise
    scale is re-estimated from the Frobenius energy minus the ``n`` candidates' energy,
    spread over the remaining ``min(N, d) - n`` bulk values (each of mean square
    :math:`\hat s^2 \max(c, 1)`):

    .. math::
        \hat s^2 = \frac{\|W\|_F^2 - \sum_{i \le n} s_i^2}{(\min(N,d) - n)\max(c,1)}, \quad
        n = \#\{i : s_i > \hat s(1+\sqrt c) + m(\hat s)\}.

    The edge is never below the first non-candidate value (a bulk value cannot sit above
    the bulk's edge): :math:`\hat s_+ = \max(\hat s(1+\sqrt c), s_{n+1})`, and outliers are
    :math:`s_i > \hat s_+ + m` with :math:`m = \hat s\,\sigma_{N,d} F_1^{-1}(q)`.

    Args:
        values: top singular values, descending (at least one more than the outliers).
        N: rows of ``W``.
        d: columns of ``W``.
        frobenius_sq: :math:`\|W\|_F^2`.
        quantile: Tracy–Widom quantile of the margin.

    Returns:
        ``Outliers(count, values, margins, bulk_edge, bulk_edge_theory, bulk_edge_empirical,
        noise_scale, margin, cut)``.

    Raises:
        ValueError: if ``values`` is empty or ``frobenius_sq`` is not positive.

    Example:
        >>> out = detect_outliers([3.0, 2.01, 1.99], N=1000, d=1000, frobenius_sq=1008.0)
        >>> out.count, round(out.noise_scale, 3)
        (1, 1.0)
    """
    vals = [float(v) for v in (values.tolist() if isinstance(values, Tensor) else values)]
    if not vals:
        raise ValueError("`values` must hold at least one singular value, got none.")
    if not (math.isfinite(frobenius_sq) and frobenius_sq > 0):
        raise ValueError(f"`frobenius_sq` must be positive and finite, got {frobenius_sq!r}.")
    c = N / d
    unit_margin = tracy_widom_margin(N, d, quantile, 1.0)
    root = mp_bulk_edge(c)
    rank = min(N, d)

    def scale_for(n: int) -> float:
        rest = frobenius_sq - sum(v * v for v in vals[:n])
        return math.sqrt(max(rest, 0.0) / (max(rank - n, 1) * max(c, 1.0))) or 1e-300

    n = 0
    while True:
        s_hat = scale_for(n)
        cand = sum(1 for v in vals if v > s_hat * (root + unit_margin))
        if cand <= n or cand >= len(vals):
            n = max(n, cand)
            break
        n = cand
    s_hat = scale_for(min(n, len(vals)))
    first_non = vals[n] if n < len(vals) else float("nan")
    edge = s_hat * root if math.isnan(first_non) else max(s_hat * root, first_non)
    margin = s_hat * unit_margin
    cut = edge + margin
    out_vals = [v for v in vals if v > cut]
    empirical = vals[len(out_vals)] if len(out_vals) < len(vals) else float("nan")
    return Outliers(
        count=len(out_vals),
        values=out_vals,
        margins=[(v - cut) / margin for v in out_vals],
        bulk_edge=edge,
        bulk_edge_theory=mp_bulk_edge(c),
        bulk_edge_empirical=empirical,
        noise_scale=s_hat,
        margin=margin,
        cut=cut,
    )


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


def _order_fit(DtQ: Tensor, A: Tensor, Q: Tensor, B: Tensor | None) -> OrderDecomposition:
    # DtQ: (d, K+1) = dW^T Q; A = Q R with A's columns normalised -> rho_tilde = R^{-1} Q^T dW
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
    _check_matrix(W)
    _check_finite(W)
    N, d = W.shape
    if a.shape != (N,):
        raise ValueError(f"`a` must have shape ({N},), got {tuple(a.shape)}.")
    if W_prev is not None and W_prev.shape != W.shape:
        raise ValueError(f"`W_prev` must have shape {(N, d)}, got {tuple(W_prev.shape)}.")
    if B is not None and (B.ndim != 2 or B.shape[0] != d):
        raise ValueError(f"`B` must have shape ({d}, r), got {tuple(B.shape)}.")
    A, Q = hadamard_power_basis(a.to(W.device), max_order)
    Qw = Q.to(W.dtype)
    DtQ = _rmm(W, Qw) if W_prev is None else _rmm(W, Qw) - _rmm(W_prev, Qw)  # (d, K+1)
    return _order_fit(DtQ, A, Q, B)


def analyze_snapshot(
    W: Tensor,
    *,
    a: Tensor | None = None,
    B: Tensor | None = None,
    W_prev: Tensor | None = None,
    W0: Tensor | None = None,
    alphas: Sequence[float] | None = None,
    a_kind: str = "gaussian",
    activation_coefficients: Sequence[float] | None = None,
    k: int = 32,
    max_order: int = 4,
    quantile: float = 0.995,
    warm_start: Tensor | None = None,
    tol: float = 1e-3,
    max_iters: int = 200,
    block_size: int = 16,
    seed: int = 0,
    warm_start_deflated: Tensor | None = None,
    W_prev_products: Tensor | None = None,
    W0_products: Tensor | None = None,
) -> SnapshotSummary:
    r"""Complete spectral analysis of one snapshot ``W_t`` (SPEC §4); the engine's entry point.

    Top singular triplets by block Krylov (:func:`top_singular_triplets`'s solver) with a
    stopping rule aimed at the outliers: stop when (i) every outlier's residual
    :math:`\|W^\top u_i - s_i v_i\|/s_1 \le \mathrm{tol}`, (ii) the first value below the cut
    is bounded below it, :math:`s_{n+1} + \|r_{n+1}\| < \hat s_+ + m`, and (iii) the count
    is unchanged from the previous iteration. Outliers by :func:`detect_outliers`; the
    reported ``k`` grows until the ``(k+1)``-th value is inside the bulk. The first ``n+1``
    values are converged; the remaining ones are Ritz values (lower bounds, see
    ``residuals``). With ``a`` the deflated count uses :math:`(I - \hat a\hat a^\top)W`, with
    the same stopping rule, on the same Krylov basis: its Ritz triplets come from
    :math:`(I - \hat a\hat a^\top)WQ` without extra products, and both operators' residual
    blocks share one product with :math:`W^\top` and extend the basis together (one product
    with ``W``); :math:`W^\top Q_a` for the order-k fit rides along the first product.

    Args:
        W: weights, shape ``(N, d)``, float32 or float64.
        a: second-layer weights, shape ``(N,)``.
        B: orthonormal target directions, shape ``(d, r)``.
        W_prev: previous snapshot, shape ``(N, d)``: order-k decomposition of ``W - W_prev``.
        W0: initial weights, shape ``(N, d)``: finite-N predicted count (needs ``a``).
        alphas: :math:`\alpha_1..\alpha_t` of the steps taken; ``None`` -> no prediction.
        a_kind: ``"gaussian"``, ``"rademacher"`` or ``"constant"``.
        activation_coefficients: :math:`\mu_0..\mu_K` to flag gapped activations.
        k: number of top singular values to report (grown if needed).
        max_order: highest order ``K`` of the left basis and decomposition.
        quantile: Tracy–Widom quantile of the margin.
        warm_start: previous right vectors, shape ``(d, k')``.
        tol: relative residual tolerance of the outliers.
        max_iters: Krylov iteration cap.
        block_size: number of Ritz pairs refined per iteration (at least ``n_out + 2``).
        seed: seed of the random start columns.
        warm_start_deflated: previous deflated right vectors (a previous summary's
            ``deflated_right_vectors``), shape ``(d, k')``; used with ``a``.
        W_prev_products: :math:`W_{prev}^\top Q_a`, shape ``(d, K+1)`` -- the previous
            summary's ``a_products`` (same ``a`` and ``max_order``); replaces the product
            with ``W_prev`` (one pass over it) in the order-k fit.
        W0_products: :math:`W_0^\top Q_a`, shape ``(d, K+1)`` (the step-0 summary's
            ``a_products``); replaces the product with ``W0`` in the finite-N count.

    Returns:
        A :class:`SnapshotSummary`.

    Raises:
        ValueError: on wrong shapes, ``k > min(N, d)``, NaN/Inf in ``W``, unknown ``a_kind``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> N, d = 400, 800
        >>> u = torch.randn(N, generator=g, dtype=torch.float64); u /= u.norm()
        >>> v = torch.randn(d, generator=g, dtype=torch.float64); v /= v.norm()
        >>> W = torch.randn(N, d, generator=g, dtype=torch.float64) / d**0.5
        >>> s = analyze_snapshot(W + 3.0 * torch.outer(u, v), k=8)
        >>> s.outliers, round(s.outlier_values[0], 1)
        (1, 3.2)
    """
    _check_matrix(W)
    N, d = W.shape
    k = _check_k(k, N, d)
    if a_kind not in A_KINDS:
        raise ValueError(f"`a_kind` must be one of {A_KINDS}, got {a_kind!r}.")
    if a is not None and (a.ndim != 1 or a.shape[0] != N):
        raise ValueError(f"`a` must have shape ({N},), got {tuple(a.shape)}.")
    if B is not None and (B.ndim != 2 or B.shape[0] != d):
        raise ValueError(f"`B` must have shape ({d}, r), got {tuple(B.shape)}.")
    for name, M in (("W_prev", W_prev), ("W0", W0)):
        if M is not None and tuple(M.shape) != (N, d):
            raise ValueError(f"`{name}` must have shape ({N}, {d}) like `W`, got {tuple(M.shape)}.")
    _check_warm(warm_start, d)
    if warm_start_deflated is not None and (warm_start_deflated.ndim != 2 or warm_start_deflated.shape[0] != d):
        raise ValueError(
            f"`warm_start_deflated` must have shape ({d}, k'), got {tuple(warm_start_deflated.shape)}."
        )
    if int(max_order) != max_order or max_order < 0:
        raise ValueError(f"`max_order` must be a non-negative integer, got {max_order!r}.")
    for name, M in (("W_prev_products", W_prev_products), ("W0_products", W0_products)):
        if M is not None and tuple(M.shape) != (d, max_order + 1):
            raise ValueError(
                f"`{name}` must have shape ({d}, {max_order + 1}) (a previous summary's "
                f"`a_products` with the same `max_order`), got {tuple(M.shape)}."
            )
    if not 0.5 <= quantile <= 0.9999:
        raise ValueError(f"`quantile` must lie in [0.5, 0.9999], got {quantile!r}.")
    if not tol > 0:
        raise ValueError(f"`tol` must be positive, got {tol!r}.")
    if a is not None and max_order + 1 > N:
        raise ValueError(
            f"`max_order` = {max_order} needs the {max_order + 1} left vectors a, a^2, ... to fit in width N = {N}: "
            f"use max_order <= {N - 1} or a wider network."
        )
    fro_sq = _check_finite(W)
    rank = min(N, d)
    notes: list[str] = []

    with _tf32_off(W.device), torch.no_grad():
        # --- top-k of W (and of (I - a a^T) W) with the outlier stopping rule ----------
        # One shared Krylov basis serves both operators (one W and one W^T product per
        # iteration); W^T Q_a rides along the first W^T product.
        width = min(d, k + 8) if warm_start is None else min(d, block_size)
        starts = [s for s in (warm_start, warm_start_deflated if a is not None else None) if s is not None]
        V0 = _start_block(W, width, torch.cat(starts, dim=1) if starts else None, seed)
        rule_kw = dict(N=N, d=d, k=k, quantile=quantile, tol=tol, block=block_size)
        rules = [_OutlierRule(fro_sq=fro_sq, **rule_kw)]
        projectors: list[Tensor | None] = [None]
        Qaw = a_hat = None
        if a is not None:
            A, Qa = hadamard_power_basis(a.to(W.device), max_order)  # (N, K+1) float64
            Qaw = Qa.to(W.dtype)
            a_hat = Qaw[:, :1]  # (N, 1)
            # ||(I - a a^T) W||_F^2 = ||W||_F^2 - ||W^T a_hat||^2, set once W^T a_hat is known
            rules.append(_OutlierRule(fro_sq=fro_sq, **rule_kw))
            projectors.append(a_hat)

        def _set_deflated_energy(WtQ_: Tensor) -> None:
            rules[1].fro_sq = max(fro_sq - float(WtQ_[:, 0].to(torch.float64).square().sum()), 1e-300)

        trips, WtQ, matvecs = _joint_krylov(
            W, V0, rules, projectors, max_iters=max_iters,
            max_basis=max(4 * block_size, 2 * k + 3 * block_size, 96) * len(rules),
            extra_left=Qaw, on_extra=_set_deflated_energy if a is not None else None,
        )
        trip = trips[0]
        values = trip.values
        det = detect_outliers(values, N=N, d=d, frobenius_sq=fro_sq, quantile=quantile)
        n_out = det.count
        k_rep = min(max(k, n_out + 1), values.shape[0], rank)
        converged = all(t.converged for t in trips)
        if not converged:
            notes.append("top-k solver hit max_iters: values may be inaccurate")

        # --- quantities needing a ----------------------------------------------------
        outliers_deflated = None
        deflated_right = None
        left_al = None
        order_strengths = order_al = None
        finite_n = None
        if a is not None and WtQ is not None and Qaw is not None:  # all three set together
            trip_d = trips[1]
            det_d = detect_outliers(
                trip_d.values, N=N, d=d, frobenius_sq=rules[1].fro_sq, quantile=quantile
            )
            outliers_deflated = det_d.count
            deflated_right = trip_d.right[:, : min(max(k, det_d.count + 1), trip_d.values.shape[0])]
            left_al = ((trip.left[:, :n_out].to(torch.float64).T @ Qa) ** 2).tolist()
            if W_prev is not None or W_prev_products is not None:
                prev_p = _rmm(W_prev, Qaw) if W_prev_products is None else W_prev_products.to(WtQ)
                dec = _order_fit(WtQ - prev_p, A, Qa, B)
                order_strengths = dec.strengths.tolist()
                order_al = None if dec.alignment is None else dec.alignment.tolist()
            if W0 is not None or W0_products is not None:
                w0_p = _rmm(W0, Qaw) if W0_products is None else W0_products.to(WtQ)
                M = (WtQ - w0_p).to(torch.float64)  # (d, K+1)
                finite_n = _finite_n_from_projection(
                    M, N, d, det.noise_scale, det.cut, quantile
                ).count
        elif W_prev is not None or W0 is not None:
            notes.append("order decomposition and finite-N count need `a`")

        # --- alignments ---------------------------------------------------------------
        alignment = captured = baseline = None
        if B is not None:
            al = outlier_alignment(trip.right[:, :n_out], B.to(W.device))
            alignment, captured, baseline = al.overlaps.tolist(), al.captured_energy.tolist(), al.baseline

    # --- predictions ----------------------------------------------------------------------
    predicted = predicted_def = None
    if alphas is not None:
        pred = predicted_outlier_count(
            alphas, a_kind=a_kind, activation_coefficients=activation_coefficients
        )
        if pred.note:
            notes.append(pred.note)
        if pred.within_theory:
            predicted, predicted_def = pred.total, pred.deflated

    return SnapshotSummary(
        singular_values=values[:k_rep].tolist(),
        bulk_edge=det.bulk_edge,
        bulk_edge_theory=det.bulk_edge_theory,
        bulk_edge_empirical=det.bulk_edge_empirical,
        margin=det.margin,
        outliers=n_out,
        outliers_deflated=outliers_deflated,
        outlier_values=det.values,
        outlier_margins=det.margins,
        predicted_outliers=predicted,
        predicted_outliers_deflated=predicted_def,
        predicted_outliers_finite_n=finite_n,
        alignment=alignment,
        captured_energy=captured,
        captured_energy_baseline=baseline,
        left_alignment=left_al,
        order_strengths=order_strengths,
        order_alignment=order_al,
        theory_note="; ".join(notes) if notes else None,
        right_vectors=trip.right[:, :k_rep],
        noise_scale=det.noise_scale,
        cut=det.cut,
        residuals=trip.residuals[:k_rep].tolist(),
        matvecs=matvecs,
        converged=converged,
        deflated_right_vectors=deflated_right,
        a_products=WtQ,
    )


class _OutlierRule:
    """Stopping rule of :func:`analyze_snapshot` for one operator (state kept between iterations).

    Stop when (i) every outlier's residual is at most ``tol`` (relative to :math:`s_1`),
    (ii) the first value below the cut is bounded below it, :math:`s_{n+1} + \\|r_{n+1}\\| <`
    cut, and (iii) the count equals the previous iteration's.
    """

    def __init__(self, *, N: int, d: int, k: int, fro_sq: float, quantile: float, tol: float,
                 block: int) -> None:
        self.N, self.d, self.k, self.fro_sq = N, d, k, fro_sq
        self.quantile, self.tol, self.block = quantile, tol, block
        self.rank = min(N, d)
        self.prev, self.n, self.need = -1, 0, 0

    def _detect(self, S: Tensor) -> Outliers:
        return detect_outliers(S, N=self.N, d=self.d, frobenius_sq=self.fro_sq, quantile=self.quantile)

    def n_check(self, S: Tensor) -> int:
        self.n = self._detect(S[: max(self.k, self.block)]).count
        return min(max(self.block, self.n + 2, self.need), self.rank)

    def stop(self, S: Tensor, res: Tensor, it: int) -> bool:
        if self.n + 1 > res.shape[0] and self.n + 1 <= self.rank:
            return False
        det = self._detect(S[: res.shape[0]])
        n = det.count
        if n + 1 > res.shape[0] and n + 1 <= self.rank:  # this recount fills the refined block: refine more pairs
            self.need = n + 2
            return False
        ok_res = bool((res[:n] <= self.tol).all())
        guard = n >= self.rank or float(S[n]) + float(res[n]) * float(S[0]) < det.cut
        stable = n == self.prev
        self.prev = n
        return ok_res and guard and stable


def _joint_krylov(
    W: Tensor,
    V0: Tensor,
    rules: Sequence[_OutlierRule],
    projectors: Sequence[Tensor | None],
    *,
    max_iters: int,
    max_basis: int,
    extra_left: Tensor | None = None,
    on_extra: Callable[[Tensor], None] | None = None,
) -> tuple[list[SingularTriplets], Tensor | None, int]:
    r"""One block Krylov basis shared by several operators :math:`W_j = (I - q_j q_j^\top) W`.

    ``Q`` (d, m) and ``P = W Q`` (N, m) are shared; the Ritz triplets of :math:`W_j` on
    ``span Q`` come from :math:`P_j = P - q_j (q_j^\top P)` without products with ``W``
    (``q_j = None`` is ``W`` itself). Each iteration takes **one** product with
    :math:`W^\top` (the residuals of every unfinished operator, side by side, since
    :math:`W_j^\top u = W^\top u` for :math:`u \perp q_j`) and **one** with ``W`` (the new
    block: all those residuals, orthonormalised against ``Q``). An operator is frozen at the
    iteration its rule stops. ``extra_left`` (N, r) rides along the first :math:`W^\top`
    product; ``on_extra`` sees :math:`W^\top` ``extra_left`` before the first stopping test.
    Returns (triplets per operator, :math:`W^\top` ``extra_left``, columns multiplied).
    """
    d = V0.shape[0]
    Q = _orthonormalize(V0, None, float(torch.linalg.vector_norm(V0, dim=0).max()))  # (d, m)
    P = W @ Q  # (N, m)
    matvecs = Q.shape[1]
    results: list[SingularTriplets | None] = [None] * len(rules)
    extra_out: Tensor | None = None
    it = 0
    while True:
        it += 1
        active, keep = [], []
        for j, (rule, q) in enumerate(zip(rules, projectors)):
            Pj = P if q is None else P - q @ (q.T @ P)  # (N, m)
            G = Pj.T.to(torch.float64) @ Pj.to(torch.float64)  # (m, m)
            evals, evecs = torch.linalg.eigh(G)
            evals, evecs = evals.flip(0).clamp_min(0.0), evecs.flip(1)
            keep.append(evecs)
            if results[j] is not None:
                continue
            S_all = evals.sqrt()  # (m,)
            p = max(1, min(rule.n_check(S_all), Q.shape[1]))
            S = S_all[:p]
            Y = evecs[:, :p].to(P.dtype)  # (m, p)
            safe = torch.where(S > 0, S, torch.ones_like(S)).to(P.dtype)
            active.append((j, S_all, S, Pj @ Y / safe, Q @ Y))  # U (N, p), V (d, p)
        cols = [U for _, _, _, U, _ in active]
        n_extra = 0 if extra_left is None or extra_out is not None else extra_left.shape[1]
        if n_extra:
            cols.append(extra_left)
        Z = _rmm(W, torch.cat(cols, dim=1))  # (d, sum p [+ r]): the one W^T product
        matvecs += Z.shape[1]
        if n_extra:
            extra_out = Z[:, Z.shape[1] - n_extra:]
            if on_extra is not None:
                on_extra(extra_out)
        exhausted = Q.shape[1] >= d
        residual_blocks, start = [], 0
        for j, S_all, S, U, V in active:
            p = S.shape[0]
            R = Z[:, start:start + p] - V * S.to(P.dtype)  # (d, p)
            start += p
            res_abs = torch.linalg.vector_norm(R, dim=0).to(torch.float64)  # (p,)
            s1 = float(S_all[0]) if float(S_all[0]) > 0 else 1.0
            res = res_abs / s1
            done = rules[j].stop(S_all, res, it) or exhausted
            if done or it >= max_iters:
                results[j] = SingularTriplets(
                    S.to(P.dtype), U, V, res.to(P.dtype), it, matvecs, bool(done)
                )
            else:
                residual_blocks.append(R)
        if not residual_blocks:
            return [r for r in results if r is not None], extra_out, matvecs
        R = torch.cat(residual_blocks, dim=1)
        Qn = _orthonormalize(R, Q, float(torch.linalg.vector_norm(R, dim=0).max()) + 1e-30)
        if Qn.shape[1] == 0:  # invariant subspace: every remaining operator is converged
            for j, S_all, S, U, V in active:
                if results[j] is None:
                    res = torch.zeros_like(S)
                    results[j] = SingularTriplets(S.to(P.dtype), U, V, res.to(P.dtype), it, matvecs, True)
            return [r for r in results if r is not None], extra_out, matvecs
        if Q.shape[1] + Qn.shape[1] > max_basis:  # thick restart on every operator's top Ritz vectors
            per = max(1, (max_basis - Qn.shape[1]) // len(keep))
            C = torch.cat([Y[:, :per] for Y in keep], dim=1).to(P.dtype)  # (m, r)
            Cq = _orthonormalize(C, None, 1.0)
            Q, P = Q @ Cq, P @ Cq
            Qn = _orthonormalize(Qn, Q, 1.0)
        Pn = W @ Qn  # (N, b): the one W product
        matvecs += Qn.shape[1]
        Q = torch.cat([Q, Qn], dim=1)
        P = torch.cat([P, Pn], dim=1)
