r"""Stages 1 and 2 of the engine (SPEC §4): the top of the spectrum of ``W``, resolved as far as the outlier rule
needs, and the outliers that rule finds in it.

Block Krylov (:func:`~spikelearn.functional.krylov.block_krylov`) with a stopping rule aimed at the outliers *and*
the window of bulk values their edge is fitted from (:class:`OutlierStop`): stop when (i) every outlier's residual
:math:`\|W^\top u_i - s_i v_i\|/s_1 \le \mathrm{tol}`, (ii) each of the next ``window + 1`` values is within
:math:`\hat\sigma/4` of the true value by the quadratic residual bound :math:`r_j^2/(4\,g_j) \le \hat\sigma/4`
(:math:`\hat\sigma` the fitted edge's Tracy–Widom scale, :math:`g_j = \max(\theta_j - \theta_p - r_p,\ \hat\sigma)` the
gap down to the last refined pair ``p``, never less than a bulk spacing), and (iii) the count is unchanged from the
previous iteration (on the first iteration of a warm start: equal to the count of the analysis it came from).
The first ``n + window + 5`` values are converged (their residuals are logged); the rest of the ``k`` reported are
Ritz values of the basis (lower bounds; residual ``nan``).

Symbols: ``W`` ``(N, d)``, ``Q`` ``(d, m)`` the Krylov basis, ``P = W Q``, ``G = PᵀP`` (float64), ``Q_a`` ``(N, K+1)``
the Gram–Schmidt basis of ``a, a^{∘2}, …`` whose products :math:`W^\top Q_a` ride along the first ``Wᵀ`` product.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from spikelearn.functional.inputs import EngineConfig, EngineState
from spikelearn.functional.krylov import KrylovResult, SingularTriplets, block_krylov
from spikelearn.functional.outliers import (
    EDGE_WINDOW,
    MarchenkoPasturRule,
    OutlierRule,
    Outliers,
    degenerate_outliers,
    numerical_rank,
)
from spikelearn.functional.spectral import random_start

__all__ = ["EXACT_RANK", "WARM_EXTRA", "OutlierStop", "Spectrum", "top_spectrum", "zero_spectrum"]

EXACT_RANK = 64
"""Up to this ``min(N, d)`` the engine starts from a basis of the whole row space: exact in one iteration."""

WARM_EXTRA = 24
"""Ritz vectors kept beyond the refined pairs for the next warm start: a spike-birth step rotates the bulk's top
vectors by more than their spacing, and a start that already holds them converges sooner (BENCHMARKS.md)."""


class Spectrum(NamedTuple):
    """The top of the spectrum of one snapshot.

    Attributes:
        values: reported singular values, descending, float64, shape ``(k',)``: the refined pairs, then further
            Ritz values of the basis (lower bounds); ``k' >= min(k, …)`` and ``k' > n_out``.
        residuals: relative residuals of ``values`` (``nan`` past the refined pairs), length ``k'``.
        trusted_values: the float64 Ritz values the outlier rule may read (resolved to the rule's accuracy).
        left: left vectors of the refined pairs, ``(N, p)``.
        right: right vectors of the refined pairs, ``(d, p)``.
        frobenius_sq: :math:`\\|W\\|_F^2`, accumulated in float64.
        matvecs: columns multiplied by ``W`` or ``Wᵀ``.
        converged: whether the stopping rule was met within ``max_iters``.
        krylov: the Krylov basis it came from (for the deflated count and the next warm start).
    """

    values: Tensor
    residuals: list[float]
    trusted_values: Tensor
    left: Tensor
    right: Tensor
    frobenius_sq: float
    matvecs: int
    converged: bool
    krylov: KrylovResult

    @property
    def note(self) -> str | None:
        return None if self.converged else "top-k solver hit max_iters: values may be inaccurate"


class OutlierStop:
    r"""The engine's :class:`~spikelearn.functional.krylov.StoppingRule` (state kept between iterations).

    With ``n`` the count of the outlier rule on the *trusted* values (the first
    ``n + window + EXTRA_CANDIDATES + 1``, so the scan can test a few candidates below the count), stop when (i) every
    outlier's residual is at most ``tol`` (relative to :math:`s_1`), (ii) every other trusted value has
    :math:`r_j^2/(4\,g_j) \le \hat\sigma/4`, and (iii) the count equals the previous iteration's (or, on the first
    iteration, ``previous_count``). The refined block grows to hold the trusted values, and at least as many as the
    Marchenko–Pastur pre-count (``<= MAX_PRECOUNT``) needs, so a dense run of many outliers is never mistaken for
    the top of a bulk.
    """

    MAX_PRECOUNT = 48
    BLOCK_FACTOR = 1.5  # pairs refined per trusted value: a wider block converges in fewer iterations
    EXTRA_CANDIDATES = 4

    def __init__(
        self, rule: OutlierRule, *, N: int, d: int, k: int, frobenius_sq: float, tol: float, eps: float,
        previous_count: int | None = None,
    ) -> None:
        self.rule, self.N, self.d, self.k, self.fro_sq, self.tol, self.eps = rule, N, d, k, frobenius_sq, tol, eps
        self.window = int(rule.window)
        self.precount_rule = MarchenkoPasturRule(quantile=getattr(rule, "quantile", 0.999))
        self.rank = min(N, d)
        self.prev = -1 if previous_count is None else int(previous_count)  # the count (iii) compares with
        self.need, self.trusted = 0, self.rank
        self._seen: dict[tuple[float, ...], Outliers] = {}  # the scans of this iteration and the last

    def _scan(self, S: Tensor) -> Outliers:
        # the same values are often scanned twice (n_check and stop, stop and the caller): a scan is pure
        key = tuple(S.tolist())
        if key not in self._seen:
            if len(self._seen) >= 4:
                self._seen.pop(next(iter(self._seen)))
            self._seen[key] = self._detect(key)
        return self._seen[key]

    def _detect(self, values: tuple[float, ...]) -> Outliers:
        """The rule on the values above the numerical rank: zero values are no bulk, and a rank that leaves the rule
        fewer bulk values than its window is a degenerate bulk (no outliers)."""
        rank = numerical_rank(values, self.N, self.d, self.eps)
        if rank < len(values) and rank < self.window + 1 or rank == 0:
            return degenerate_outliers(values[:rank], N=self.N, d=self.d, frobenius_sq=self.fro_sq)
        return self.rule.detect(values[:rank], N=self.N, d=self.d, frobenius_sq=self.fro_sq)

    def detect(self, S: Tensor) -> Outliers:
        """The outliers among the trusted values of ``S``."""
        return self._scan(S[: self.trusted])

    def _depth(self, S: Tensor, n: int) -> int:
        precount = self.precount_rule.detect(S.tolist(), N=self.N, d=self.d, frobenius_sq=self.fro_sq).count
        return min(max(n, min(precount, self.MAX_PRECOUNT)) + self.window + self.EXTRA_CANDIDATES + 1, self.rank)

    def n_check(self, ritz_values: Tensor) -> int:
        n = self._scan(ritz_values[: max(self.k, 2 * self.window + 1)]).count
        return min(max(int(self.BLOCK_FACTOR * self._depth(ritz_values, n)) + 2, self.need), self.rank)

    def stop(self, ritz_values: Tensor, residuals: Tensor, iteration: int) -> bool:
        S, res = ritz_values, residuals
        p = res.shape[0]
        self.trusted = p
        n = self.detect(S[:p]).count
        need = self._depth(S[:p], n)
        if need > p:  # the values below this count are not refined yet: refine more pairs
            self.need, self.prev = need + 2, n
            return False
        self.trusted = min(n + self.window + self.EXTRA_CANDIDATES + 1, p)
        det = self.detect(S)
        n = det.count
        s1 = float(S[0]) if float(S[0]) > 0 else 1.0
        res_abs = res * s1
        floor = 10 * torch.finfo(torch.float32).eps * s1
        ok_out = bool((res[:n] <= self.tol).all())
        # r^2 / (4 gap) <= sigma / 4, the gap measured down to the last refined pair (at least sigma)
        gap = (S[n : self.trusted] - S[p - 1] - res_abs[p - 1]).clamp_min(det.edge_scale)
        ok_window = bool((res_abs[n : self.trusted].square() <= gap * max(det.edge_scale, floor)).all())
        stable = n == self.prev
        self.prev = n
        return ok_out and ok_window and stable


def zero_spectrum(W: Tensor, config: EngineConfig, extra_left: Tensor | None = None) -> tuple[Spectrum, Outliers]:
    """The spectrum of a weight that is all zeros (``||W||_F = 0``): ``k`` zero values, no vectors, no outliers.

    No product is needed: every singular value is 0 and :math:`W^\top` ``extra_left`` is zero.
    """
    N, d = W.shape
    k = min(config.k, N, d)
    zeros = torch.zeros(k, dtype=torch.float64)
    empty_d, empty_n = W.new_zeros(d, 0), W.new_zeros(N, 0)
    trip = SingularTriplets(zeros.to(W.dtype), empty_n, empty_d, zeros.to(W.dtype), 0, 0, True)
    extra = None if extra_left is None else W.new_zeros(d, extra_left.shape[1])
    krylov = KrylovResult(trip, zeros, empty_d, empty_n, torch.zeros(0, 0, dtype=torch.float64), extra, empty_d)
    spectrum = Spectrum(zeros, [0.0] * k, zeros, empty_n, empty_d, 0.0, 0, True, krylov)
    return spectrum, degenerate_outliers([], N=N, d=d, frobenius_sq=0.0)


def top_spectrum(
    W: Tensor, config: EngineConfig, state: EngineState, frobenius_sq: float, extra_left: Tensor | None = None
) -> tuple[Spectrum, Outliers]:
    """The top of the spectrum of ``W`` ``(N, d)``, warm-started from ``state``, and its outliers (module docstring).

    The outliers come with the spectrum because the stopping rule needs them: it is the outlier rule's answer on
    ``trusted_values``, the scan the stopping rule made last.

    Args:
        W: the snapshot, float32 or float64, finite.
        config: ``k``, the outlier rule, ``tol``, ``max_iters``, ``block_size``, ``seed``.
        state: ``warm`` (used when its first dimension is ``d``) and ``last_count``.
        frobenius_sq: :math:`\\|W\\|_F^2` (float64).
        extra_left: ``(N, r)`` columns whose products :math:`W^\\top` ``extra_left`` ride along (``Q_a``).

    Returns:
        ``(Spectrum, Outliers)``.
    """
    N, d = W.shape
    rank, k = min(N, d), min(config.k, N, d)
    warm = state.warm if state.warm is not None and state.warm.ndim == 2 and state.warm.shape[0] == d else None
    warm = None if warm is not None and warm.shape[1] == 0 else warm
    if rank <= EXACT_RANK:  # a basis of W's whole row space: one Rayleigh–Ritz step is the exact SVD
        V0 = torch.eye(d, dtype=W.dtype, device=W.device) if d <= N else W.T.clone()
    else:
        width = min(d, k + 8) if warm is None else min(d, config.block_size)
        V0 = random_start(W, width, warm, config.seed)
    stop = OutlierStop(config.rule, N=N, d=d, k=k, frobenius_sq=frobenius_sq, tol=config.tol,
                       eps=torch.finfo(W.dtype).eps, previous_count=None if warm is None else state.last_count)
    krylov = block_krylov(
        W, V0, stop, max_iters=config.max_iters, max_basis=max(2 * k + 3 * config.block_size, 16 * EDGE_WINDOW + 64),
        extra_left=extra_left, warm_extra=WARM_EXTRA,
    )
    trip, ritz = krylov.triplets, krylov.ritz_values
    p = trip.values.shape[0]
    trusted = ritz[: stop.trusted] if stop.trusted < p else ritz[:p]
    outliers = stop.detect(ritz[:p])
    n_out = outliers.count
    # reported: the checked (converged) pairs, then further Ritz values of the basis (lower bounds)
    k_rep = min(max(k, n_out + 1), ritz.shape[0], rank)
    values = torch.cat([trip.values.to(torch.float64), ritz[p:k_rep]])[:k_rep]
    residuals = (trip.residuals.tolist() + [math.nan] * max(k_rep - p, 0))[:k_rep]
    spectrum = Spectrum(values, residuals, trusted, trip.left, trip.right, frobenius_sq, trip.matvecs,
                        trip.converged, krylov)
    return spectrum, outliers
