r"""Stage 3 of the engine (SPEC §2, §4): what the two-layer theory says about a snapshot's outliers.

* the **deflated count**, outliers of :math:`(I - \hat a\hat a^\top)W` (the first-step spike off), by interlacing;
* the **left alignments** of the outliers with the Gram–Schmidt basis ``Q_a`` of ``a, a^{∘2}, …``;
* the **order-k fit** of the update :math:`W_t - W_{t-1}` from the cached products :math:`W^\top Q_a`;
* the **finite-N predicted count**: the projected low-rank part :math:`(W_t - W_0)^\top Q_a` fed into the BGN
  formula at the fitted noise scale, cut at the same margin above its Marchenko–Pastur edge;
* the **asymptotic prediction** :math:`1 + \lfloor\alpha_2/(1/2 - \alpha_1)\rfloor` (:func:`asymptotic_prediction`).

Symbols: ``W`` ``(N, d)``, ``a`` ``(N,)``, ``A = [a, …, a^{∘(K+1)}]`` ``(N, K+1)``, ``Q_a`` its Gram–Schmidt basis,
:math:`\hat a` its first column; ``Q`` ``(d, m)``, ``P = WQ`` and ``G = PᵀP`` from the Krylov stage.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from scipy.optimize import brentq
from torch import Tensor

from spikelearn.functional.alignment import OrderDecomposition, order_fit
from spikelearn.functional.krylov import gram, mm, orthonormalize
from spikelearn.functional.inputs import TheoryInputs
from spikelearn.functional.outliers import OUTLIER_QUANTILE, Outliers
from spikelearn.functional.rmt import bbp_threshold, bgn_rank_one
from spikelearn.functional.spectrum import Spectrum
from spikelearn.functional.theory import (
    FiniteNPrediction,
    OutlierPrediction,
    _finite_n_from_projection,
    predicted_outlier_count,
)

__all__ = [
    "MIN_COVERAGE", "MP_EDGE_MARGINS", "References", "TwoLayer", "asymptotic_prediction", "comparator_coverage",
    "comparator_validity",
    "deflated_count", "two_layer_theory",
]

MIN_COVERAGE = 0.9
"""Smallest coverage (share of the outlier subspace inside ``span(Q_a)``) at which the finite-N count is reported."""

MP_EDGE_MARGINS = 2.0
"""Largest distance, in margins, between the fitted bulk edge and the Marchenko–Pastur edge at the fitted noise scale
at which the finite-N count (whose BGN locations and cut are Marchenko–Pastur's) is reported."""


class References(NamedTuple):
    """Products of earlier snapshots with ``Q_a`` (the engine never keeps or reads those snapshots again).

    Attributes:
        previous: :math:`W_{t-1}^\\top Q_a`, ``(d, K+1)``: the order-k fit of the update (``None``: no fit).
        initial: :math:`W_0^\\top Q_a`, ``(d, K+1)``: the finite-N count (``None``: no count).
    """

    previous: Tensor | None = None
    initial: Tensor | None = None


class TwoLayer(NamedTuple):
    """The two-layer theory's fields of one snapshot.

    Attributes:
        outliers_deflated: outliers of :math:`(I - \\hat a\\hat a^\\top)W`.
        left_alignment: :math:`\\langle u_i, q_k\\rangle^2`, ``(n_out, K+1)`` float64.
        order: the order-k fit of :math:`W_t - W_{t-1}` (``None`` without ``references.previous``).
        finite_n: the finite-N spiked-model prediction (``None`` without ``references.initial``, or when it does not
            apply: see ``finite_n_note``).
        coverage: how much of what the outliers learned lies in the comparator's basis ``span(a, a^{∘2}, …)``
            (:func:`comparator_coverage`; ``None`` without outliers).
        finite_n_note: why the finite-N count is withheld (``None`` when it is reported).
        a_products: :math:`W_t^\\top Q_a`, ``(d, K+1)``: the next analysis's ``references.previous``.
        matvecs: columns multiplied for the deflated count (0 or 1).
    """

    outliers_deflated: int
    left_alignment: Tensor
    order: OrderDecomposition | None
    finite_n: FiniteNPrediction | None
    a_products: Tensor
    matvecs: int
    coverage: float | None = None
    finite_n_note: str | None = None

    def predicted_locations(self) -> list[float] | None:
        """The finite-N BGN locations that clear the cut, descending (``None`` without a finite-N count)."""
        if self.finite_n is None:
            return None
        return [x for x in self.finite_n.locations if x > self.finite_n.cut]

    def outlier_predicted_locations(self, n_out: int) -> list[float | None] | None:
        """Per measured outlier, the predicted location of the same rank (``None`` past the predicted ones)."""
        locations = self.predicted_locations()
        if locations is None:
            return None
        return [locations[i] if i < len(locations) else None for i in range(n_out)]

    def note(self, outliers: Outliers) -> str | None:
        """Says when the measured count differs from the finite-N prediction."""
        if self.finite_n_note is not None:
            return self.finite_n_note
        if self.finite_n is None or self.finite_n.count == outliers.count:
            return None
        return (f"measured {outliers.count} outliers ({outliers.marginal} marginal) where the finite-N spiked model "
                f"predicts {self.finite_n.count}")


def deflated_count(W: Tensor, spectrum: Spectrum, a_hat: Tensor, Wt_a: Tensor, outliers: Outliers) -> tuple[int, int]:
    r"""Outliers of :math:`(I - \hat a\hat a^\top)W` by interlacing, :math:`s_{i+1}(W) \le s_i(\cdot) \le s_i(W)`:
    ``n`` or ``n - 1``.

    It is ``n`` iff the ``n``-th Ritz value of the deflated operator on ``span(Q, Wᵀâ)`` clears the same cut (a
    rank-one deflation leaves the bulk and its fitted edge in place). Those Ritz values come from the Gram
    :math:`P^\top(I - \hat a\hat a^\top)P = G - (P^\top\hat a)(\hat a^\top P)`; one product with ``W`` only when
    :math:`W^\top\hat a` is not in ``span(Q)`` already (it joins the Krylov basis after the first iteration).

    Args:
        W: ``(N, d)``.
        spectrum: the Krylov stage (its ``Q``, ``P``, ``G``).
        a_hat: :math:`\hat a`, ``(N, 1)`` in ``W``'s dtype.
        Wt_a: :math:`W^\top\hat a`, ``(d, 1)``.
        outliers: the measured outliers (count and cut).

    Returns:
        ``(count, columns multiplied)``.
    """
    n_out, cut = outliers.count, outliers.cut
    if n_out == 0:
        return 0, 0
    Q, P, G = spectrum.krylov.basis, spectrum.krylov.products, spectrum.krylov.gram
    extra = orthonormalize(Wt_a, Q, float(torch.linalg.vector_norm(Wt_a)) + 1e-30)  # (d, 0 or 1)
    a64 = a_hat.to(torch.float64)  # (N, 1)
    Pf = P
    if extra.shape[1]:
        Pe = mm(W, extra)  # (N, 1)
        cross = P.to(torch.float64).T @ Pe.to(torch.float64)  # (m, 1)
        G = torch.cat([torch.cat([G, cross], dim=1), torch.cat([cross.T, gram(Pe)], dim=1)], dim=0)
        Pf = torch.cat([P, Pe], dim=1)
    c = Pf.to(torch.float64).T @ a64  # (m, 1)
    theta = torch.linalg.eigvalsh(G - c @ c.T).flip(0).clamp_min(0.0).sqrt()
    keep = n_out if n_out <= theta.shape[0] and float(theta[n_out - 1]) > cut else n_out - 1
    return keep, extra.shape[1]


def two_layer_theory(
    W: Tensor,
    spectrum: Spectrum,
    outliers: Outliers,
    basis: tuple[Tensor, Tensor],
    references: References,
    B: Tensor | None = None,
) -> TwoLayer:
    r"""The deflated count, left alignments, order-k fit and finite-N count of one snapshot (module docstring).

    Args:
        W: ``(N, d)``.
        spectrum: stage 1, run with ``extra_left = Q_a`` (its ``krylov.extra_products`` is :math:`W^\top Q_a`).
        outliers: stage 2.
        basis: ``(A, Q_a)``, both ``(N, K+1)`` float64, from
            :func:`~spikelearn.functional.theory.hadamard_power_basis`.
        references: :math:`W_{t-1}^\top Q_a` and :math:`W_0^\top Q_a`.
        B: target directions ``(d, r)``, for the order-k alignments.

    Returns:
        :class:`TwoLayer`.
    """
    A, Qa = basis
    N, d = W.shape
    WtQ = spectrum.krylov.extra_products  # (d, K+1)
    if WtQ is None:
        raise ValueError("`spectrum` must be computed with `extra_left = Q_a` for the two-layer theory.")
    a_hat = Qa.to(W.dtype)[:, :1]  # (N, 1)
    n_out = outliers.count
    deflated, extra = deflated_count(W, spectrum, a_hat, WtQ[:, :1], outliers)
    left = (spectrum.left[:, :n_out].to(torch.float64).T @ Qa) ** 2  # (n_out, K+1)
    order = None
    if references.previous is not None:
        order = order_fit(WtQ - references.previous.to(WtQ), A, Qa, B)
    finite_n = None
    coverage = comparator_coverage(left, outliers, N / d)
    withheld = comparator_validity(outliers, coverage)
    if references.initial is not None and outliers.method != "degenerate" and withheld is None:
        M = (WtQ - references.initial.to(WtQ)).to(torch.float64)  # (d, K+1)
        # BGN locations in the Marchenko–Pastur model at s_hat, cut at the same margin above its edge (the cut is
        # given, so the quantile argument is not read)
        cut = outliers.bulk_edge_mp + outliers.margin
        finite_n = _finite_n_from_projection(M, N, d, outliers.noise_scale, cut, OUTLIER_QUANTILE)
    return TwoLayer(deflated, left, order, finite_n, WtQ, extra, coverage,
                    withheld if references.initial is not None else None)


def comparator_coverage(left_alignment: Tensor, outliers: Outliers, c: float) -> float | None:
    r"""Coverage of the finite-N comparator: how much of what the outliers learned lies in ``span(Q_a)``.

    For outlier ``i`` with left vector :math:`u_i` at location :math:`s_i`, the share of :math:`u_i` inside the span,
    :math:`\|Q_a^\top u_i\|^2`, is compared with the share a rank-one spike lying wholly in the span would show at
    that location: the BGN left overlap :math:`\ell(\theta_i)` at the strength :math:`\theta_i` whose
    Marchenko–Pastur location at the noise scale :math:`\hat s` is :math:`s_i` (a finite strength never gives an
    overlap of 1). Coverage is the mean over the outliers of :math:`\min(1, \|Q_a^\top u_i\|^2 / \ell(\theta_i))`;
    ``None`` without outliers.

    Args:
        left_alignment: :math:`\langle u_i, q_k\rangle^2`, ``(n_out, K+1)``.
        outliers: the measured outliers (values, noise scale).
        c: ``N / d``.
    """
    n = outliers.count
    if n == 0:
        return None
    inside = left_alignment.sum(dim=1).tolist()  # (n_out,)
    shares = []
    for share, value in zip(inside, outliers.values):
        expected = _expected_left_overlap(value, c, outliers.noise_scale)
        shares.append(min(1.0, share / expected) if expected > 0 else min(1.0, share))
    return sum(shares) / n


def _expected_left_overlap(value: float, c: float, scale: float) -> float:
    """BGN left overlap of the rank-one strength whose Marchenko–Pastur location at ``scale`` is ``value`` (0 when
    ``value`` is not above that edge)."""
    low = bbp_threshold(c) * 1.000001
    if not (scale > 0 and value > bgn_rank_one(low, c, scale).location):
        return 0.0
    high = 2.0 * low
    while bgn_rank_one(high, c, scale).location < value:
        high *= 2.0
    theta = brentq(lambda t: bgn_rank_one(t, c, scale).location - value, low, high, xtol=1e-6)
    return bgn_rank_one(theta, c, scale).left_overlap


def comparator_validity(outliers: Outliers, coverage: float | None) -> str | None:
    r"""Why the finite-N count would be silently wrong for this snapshot, or ``None`` when it applies.

    The count feeds the strengths of the projection of :math:`W_t - W_0` on ``span(a, a^{∘2}, …)`` into the
    Marchenko–Pastur BGN formula at the fitted noise scale. It does not apply (i) when the measured outliers' left
    vectors have left that span (coverage below ``MIN_COVERAGE``: what was learned is not in the basis, and the basis
    directions that clear the cut are not the outliers), or (ii) when the bulk is no longer Marchenko–Pastur at its
    noise scale (the fitted edge more than ``MP_EDGE_MARGINS`` margins from :math:`\hat s(1+\sqrt c)`): the
    comparator's cut then sits inside or far above the bulk the matrix has. Both happen past two steps.

    Example:
        >>> from spikelearn.functional.outliers import outliers_above
        >>> out = outliers_above([3.0, 2.0], N=100, d=100, frobenius_sq=100.0, edge=2.0, cut=2.1, scale=0.01,
        ...                      method="toy")
        >>> comparator_validity(out, coverage=0.5)[:24]
        'finite-N count withheld:'
    """
    if coverage is not None and coverage < MIN_COVERAGE:
        return (f"finite-N count withheld: coverage {coverage:.0%} < {MIN_COVERAGE:.0%} (the outliers' left vectors lie "
                "partly outside span(a, a^2, ...), beyond what their strength explains), so the projected low-rank "
                "part does not hold what was learned")
    edge, mp_edge, margin = outliers.bulk_edge, outliers.bulk_edge_mp, outliers.margin
    if math.isfinite(edge) and math.isfinite(margin) and abs(edge - mp_edge) > MP_EDGE_MARGINS * margin:
        return (f"finite-N count withheld: the bulk is not Marchenko-Pastur at its noise scale (fitted edge "
                f"{edge:.4g}, MP edge {mp_edge:.4g}: {abs(edge - mp_edge) / margin:.1f} margins apart), and its BGN "
                "locations and cut are Marchenko-Pastur's")
    return None


def asymptotic_prediction(theory: TheoryInputs) -> OutlierPrediction | None:
    r"""The asymptotic count :math:`1 + \lfloor\alpha_2/(1/2 - \alpha_1)\rfloor` and its note (``None`` without
    ``alphas``); see :func:`~spikelearn.functional.theory.predicted_outlier_count`."""
    if theory.alphas is None:
        return None
    with warnings.catch_warnings():  # "outside the theory" is kept in the prediction's note (the record's theory_note)
        warnings.simplefilter("ignore", UserWarning)
        return predicted_outlier_count(
            theory.alphas, a_kind=theory.a_kind, activation_coefficients=theory.activation_coefficients
        )
