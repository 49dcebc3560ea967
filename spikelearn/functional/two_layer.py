r"""Stage 3 of the engine (SPEC §2, §4): what the two-layer theory says about a snapshot's outliers.

* the **deflated count**, outliers of :math:`(I - \hat a\hat a^\top)W` (the first-step spike off), by interlacing;
* the **left alignments** of the outliers with the Gram–Schmidt basis ``Q_a`` of ``a, a^{∘2}, …``;
* the **order-k fit** of the update :math:`W_t - W_{t-1}` from the cached products :math:`W^\top Q_a`;
* the **finite-N predicted count** (the comparator, SPEC §4): the low-rank part of ``W`` in a left basis that
  follows what was learned (:func:`comparator_basis`: the previous analysis's outlier vectors, ``a, a^{∘2}, …`` and
  the learned vectors' Hadamard harmonics), its strengths (:func:`low_rank_strengths`: the learned directions' by
  BGN's inverse, the others' with the bulk's own energy in the basis taken off; no ``W_0``) fed into the BGN formula
  of the *measured* bulk (its D-transform, :mod:`~spikelearn.functional.d_transform`) and cut where the measured
  outliers are cut (:func:`finite_n_comparator`);
* the comparator's **coverage**: how much of the measured outliers' left vectors its basis holds, against the
  BGN overlap the same bulk predicts at their locations;
* the **asymptotic prediction** :math:`1 + \lfloor\alpha_2/(1/2 - \alpha_1)\rfloor` (:func:`asymptotic_prediction`).

Symbols: ``W`` ``(N, d)``, ``a`` ``(N,)``, ``A = [a, …, a^{∘(K+1)}]`` ``(N, K+1)``, ``Q_a`` its Gram–Schmidt basis,
:math:`\hat a` its first column; ``Q`` ``(d, m)``, ``P = WQ`` and ``G = PᵀP`` from the Krylov stage; ``U``
``(N, n_out)`` and ``s`` the outliers' left vectors and values; ``C`` ``(N, r)`` the comparator's basis.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from torch import Tensor

from spikelearn.functional.alignment import OrderDecomposition, order_fit
from spikelearn.functional.d_transform import BulkMeasure
from spikelearn.functional.krylov import gram, mm, orthonormalize, rmm
from spikelearn.functional.inputs import TheoryInputs
from spikelearn.functional.outliers import Outliers
from spikelearn.functional.spectrum import Spectrum
from spikelearn.functional.theory import FiniteNPrediction, OutlierPrediction, predicted_outlier_count

__all__ = [
    "LEARNED_HARMONICS", "MAX_LEARNED", "MIN_COVERAGE", "ComparatorBasis", "TwoLayer", "asymptotic_prediction",
    "comparator_basis", "comparator_coverage", "comparator_validity", "deflated_count", "finite_n_comparator",
    "low_rank_strengths", "two_layer_theory",
]

MIN_COVERAGE = 0.9
"""Smallest coverage (:func:`comparator_coverage`) at which the finite-N count is reported."""

LEARNED_HARMONICS: tuple[tuple[int, int], ...] = ((0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (2, 2))
r"""The ``(j, k)`` of the columns :math:`a^{\circ j} \odot u^{\circ k}` the comparator's basis takes for each learned
left vector ``u`` (:func:`comparator_basis`); ``(0, 1)``, ``u`` itself, leads the basis."""

MAX_LEARNED = 4
"""At most this many of the previous analysis's outliers (the largest) lend their harmonics to the basis."""

_NEW_DIRECTION = 1e-3  # a column whose part outside the basis so far is below this (relative) adds no direction


class TwoLayer(NamedTuple):
    """The two-layer theory's fields of one snapshot.

    Attributes:
        outliers_deflated: outliers of :math:`(I - \\hat a\\hat a^\\top)W`.
        left_alignment: :math:`\\langle u_i, q_k\\rangle^2`, ``(n_out, K+1)`` float64.
        order: the order-k fit of :math:`W_t - W_{t-1}` (``None`` without the products of ``W_{t-1}``).
        finite_n: the finite-N spiked-model prediction (``None`` without a comparator, or when it does not apply:
            see ``finite_n_note``).
        coverage: how much of what the outliers learned lies in the comparator's basis ``span(a, a^{∘2}, …)``
            (:func:`comparator_coverage`; ``None`` without outliers).
        finite_n_note: why the finite-N count is withheld (``None`` when it is reported).
        basis_size: columns of the comparator's basis ``C`` (``None``: no comparator).
        bulk_source: how the measured bulk's law was obtained (``"full spectrum"`` or ``"stochastic Lanczos"``).
        a_products: :math:`W_t^\\top Q_a`, ``(d, K+1)``: the next analysis's ``previous``.
        matvecs: columns multiplied by ``W`` or ``Wᵀ`` here: the deflated count's (0 or 1), the comparator's basis
            (``r``) and its bulk's quadrature.
    """

    outliers_deflated: int
    left_alignment: Tensor
    order: OrderDecomposition | None
    finite_n: FiniteNPrediction | None
    a_products: Tensor
    matvecs: int
    coverage: float | None = None
    finite_n_note: str | None = None
    basis_size: int | None = None
    bulk_source: str | None = None

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
    previous: Tensor | None,
    B: Tensor | None = None,
    bulk: BulkMeasure | str | None = None,
    learned: Tensor | None = None,
) -> TwoLayer:
    r"""The deflated count, left alignments, order-k fit, coverage and finite-N count of one snapshot (module
    docstring).

    Args:
        W: ``(N, d)``.
        spectrum: stage 1, run with ``extra_left = Q_a`` (its ``krylov.extra_products`` is :math:`W^\top Q_a`).
        outliers: stage 2.
        basis: ``(A, Q_a)``, both ``(N, K+1)`` float64, from
            :func:`~spikelearn.functional.theory.hadamard_power_basis`.
        previous: :math:`W_{t-1}^\top Q_a`, ``(d, K+1)``, for the order-k fit of the update (``None``: no fit; the
            engine never keeps or reads earlier snapshots, only these products).
        B: target directions ``(d, r)``, for the order-k alignments.
        bulk: the measured bulk's law (:func:`~spikelearn.functional.d_transform.measured_bulk`), or why there is none
            to measure against (a degenerate or heavy-tailed spectrum: no coverage, and the count is withheld with that
            reason); ``None``: no comparator.
        learned: the previous analysis's outlier left vectors ``(N, n')``, largest first (``None``: none yet).

    Returns:
        :class:`TwoLayer`.
    """
    A, Qa = basis
    WtQ = spectrum.krylov.extra_products  # (d, K+1)
    if WtQ is None:
        raise ValueError("`spectrum` must be computed with `extra_left = Q_a` for the two-layer theory.")
    a_hat = Qa.to(W.dtype)[:, :1]  # (N, 1)
    n_out = outliers.count
    deflated, extra = deflated_count(W, spectrum, a_hat, WtQ[:, :1], outliers)
    left = (spectrum.left[:, :n_out].to(torch.float64).T @ Qa) ** 2  # (n_out, K+1)
    order = None
    if previous is not None:
        order = order_fit(WtQ - previous.to(WtQ), A, Qa, B)
    coverage, finite_n, withheld = None, None, bulk if isinstance(bulk, str) else None
    basis_size, source = None, None
    if isinstance(bulk, BulkMeasure):
        comparator = comparator_basis(A[:, 0], Qa, learned)
        C = comparator.C  # (N, r)
        basis_size, source = C.shape[1], bulk.source
        U = spectrum.left[:, :n_out].to(torch.float64)
        coverage = comparator_coverage(U, C, outliers, bulk)
        withheld = comparator_validity(coverage)
        if withheld is None:
            strengths = low_rank_strengths(W, comparator, bulk, U, outliers.values)
            finite_n, extra = finite_n_comparator(strengths, bulk, outliers.cut), extra + C.shape[1] + bulk.matvecs
    return TwoLayer(deflated, left, order, finite_n, WtQ, extra, coverage, withheld, basis_size, source)


class ComparatorBasis(NamedTuple):
    """The comparator's left basis.

    Attributes:
        C: ``(N, r)`` float64, orthonormal columns.
        learned: the first ``learned`` columns span the previous analysis's outlier left vectors; the rest are
            ``a, a^{∘2}, …`` and the learned vectors' harmonics, orthogonal to them.
    """

    C: Tensor
    learned: int


def _extend(C: Tensor, X: Tensor) -> Tensor:
    # Gram-Schmidt (two passes) of the columns of X against C and each other; a column with no new direction is dropped
    for x in X.T:
        r = x - C @ (C.T @ x)
        r = r - C @ (C.T @ r)
        norm = float(torch.linalg.vector_norm(r)) / max(float(torch.linalg.vector_norm(x)), 1e-300)
        if norm > _NEW_DIRECTION:
            C = torch.cat([C, (r / torch.linalg.vector_norm(r))[:, None]], dim=1)
    return C


def comparator_basis(a: Tensor, Qa: Tensor, learned: Tensor | None) -> ComparatorBasis:
    r"""The comparator's left basis: the learned left vectors ``u`` (at most :data:`MAX_LEARNED`, the previous
    analysis's outliers), then ``Q_a`` (the harmonics :math:`a^{\circ k}` of the first step's direction) and the
    harmonics :math:`a^{\circ j} \odot u^{\circ k}` (:data:`LEARNED_HARMONICS` past ``u`` itself), orthonormalised in
    that order.

    Why these: the update of ``W`` at any step has left factor :math:`a \odot \sigma'(Wx)`; with a spike
    :math:`u v^\top` in ``W`` the expansion of :math:`\sigma'` in the preactivation's component :math:`u_i (v^\top x)`
    gives the left directions :math:`a \odot u^{\circ k}`. At the first step ``u`` is :math:`\hat a` itself, which
    gives SPEC §2's :math:`a^{\circ(k+1)}`; later the learned ``u`` drift away from ``span(a^{∘k})`` and their own
    harmonics follow them (docs/theory.md §4 measures the options).

    Args:
        a: ``(N,)`` (any dtype).
        Qa: ``(N, K+1)`` float64, orthonormal.
        learned: ``(N, n')`` or ``None``.
    """
    N = Qa.shape[0]
    if learned is None or learned.shape[1] == 0:
        return ComparatorBasis(Qa, 0)
    u = learned[:, :MAX_LEARNED].to(torch.float64)
    P = _extend(Qa[:, :0], u)
    C = _extend(P, Qa)
    a64 = a.to(torch.float64) * (N**0.5 / torch.linalg.vector_norm(a.to(torch.float64)).clamp_min(1e-300))
    u = u * N**0.5  # entries of order 1, so products of powers stay of order 1
    harmonics = torch.cat([a64[:, None] ** j * u**k for j, k in LEARNED_HARMONICS if (j, k) != (0, 1)], dim=1)
    return ComparatorBasis(_extend(C, harmonics), P.shape[1])


def low_rank_strengths(
    W: Tensor, basis: ComparatorBasis, bulk: BulkMeasure, U: Tensor, values: list[float]
) -> list[float]:
    r"""Strengths of the low-rank part of ``W`` in the comparator's basis, without :math:`W_0`.

    * **Learned directions** (the previous outliers' vectors :math:`\hat u`): an empirical outlier vector carries the
      bulk's own top directions (its overlap with the spike is BGN's :math:`\ell < 1`), so its projection
      overstates the strength near the edge. Its strength is read off its location instead, by BGN's inverse:
      :math:`\rho = \|W^\top \hat u\|`, :math:`\theta = D(\rho)^{-1/2}` (0 when :math:`\rho` is not above the
      bulk): a learned direction keeps predicting an outlier while its strength clears the cut's.
    * **The other directions** (``a, a^{∘2}, …`` and the harmonics, in generic position with the bulk): with
      :math:`W = X + L` and a bulk whose rows are uncorrelated,
      :math:`\mathbb E[H^\top X X^\top H] = H^\top \operatorname{diag}(r) H`, ``r`` the bulk's row energies
      :math:`r_i = \|W_{i\cdot}\|^2 - \sum_j s_j^2 U_{ij}^2` (the outliers' energy off), so
      :math:`\theta_i^2 = \lambda_i(H^\top W W^\top H - H^\top \operatorname{diag}(r) H)_+`. At two steps this is
      the singular values of :math:`H^\top(W_t - W_0)` up to the fluctuation of :math:`W_0`'s rows in the basis
      (tests/test_comparator.py).

    Args:
        W: ``(N, d)``.
        basis: :func:`comparator_basis`.
        bulk: the measured bulk's law.
        U: the outliers' left vectors ``(N, n_out)`` float64; ``values`` their singular values.

    Returns:
        The strengths, descending (units of ``W``).
    """
    C, n_learned = basis
    products = rmm(W, C.to(W.dtype)).to(torch.float64)  # (d, r)
    learned = []
    for rho in torch.linalg.vector_norm(products[:, :n_learned], dim=0).tolist():
        learned.append(bulk.critical_strength(rho) if rho > bulk.top else 0.0)  # BGN's inverse
    H, PH = C[:, n_learned:], products[:, n_learned:]
    keep = 1.0
    if n_learned:  # the learned directions' right vectors deflated: what leaks of their spikes into H is theirs
        V = torch.linalg.qr(products[:, :n_learned])[0]  # (d, n')
        PH = PH - V @ (V.T @ PH)
        keep = 1.0 - n_learned / W.shape[1]  # the bulk's row energy left after removing n' generic right directions
    energy = torch.linalg.vector_norm(W, dim=1).to(torch.float64).square()  # (N,); a row's float32 norm: ~1e-7
    if U.shape[1]:
        s2 = torch.tensor(values, dtype=torch.float64, device=U.device) ** 2
        energy = energy - (U.square() * s2).sum(dim=1)
    G = PH.T @ PH - keep * H.T @ (energy.clamp_min(0.0)[:, None] * H)
    others = torch.linalg.eigvalsh(G).clamp_min(0.0).sqrt().tolist()
    return sorted(learned + others, reverse=True)


def finite_n_comparator(strengths: list[float], bulk: BulkMeasure, cut: float) -> FiniteNPrediction:
    r"""The finite-N count of a low-rank part against a measured bulk (SPEC §4).

    The strengths :math:`\theta_i` (units of ``W``) whose BGN outliers clear the cut are those above
    the bulk's critical strength :math:`\theta_c = D(\text{cut})^{-1/2}`; each has its location :math:`\rho_i`,
    :math:`D(\rho_i) = 1/\theta_i^2` (``nan`` for the others).

    Args:
        strengths: the low-rank part's singular values :math:`\theta_i`, descending.
        bulk: the measured bulk's law.
        cut: the outlier cut (units of ``W``).

    Example:
        >>> from spikelearn.functional.d_transform import bulk_measure
        >>> g = torch.Generator().manual_seed(0)
        >>> bulk = bulk_measure(torch.linalg.svdvals(torch.randn(300, 600, generator=g, dtype=torch.float64)
        ...                                          / 600**0.5), 300, 600)
        >>> p = finite_n_comparator([2.0, 0.5], bulk, cut=1.75)
        >>> p.count, round(p.locations[0], 2)
        (1, 2.37)
    """
    theta_c = bulk.critical_strength(cut)
    locations = [(bulk.location(t, cut) or math.nan) if t > theta_c else math.nan for t in strengths]
    count = sum(1 for t in strengths if t > theta_c)
    return FiniteNPrediction(count, strengths, locations, float(cut), theta_c)


def comparator_coverage(U: Tensor, C: Tensor, outliers: Outliers, bulk: BulkMeasure) -> float | None:
    r"""Coverage of the finite-N comparator: how much of what the outliers learned lies in its basis ``span(C)``.

    For outlier ``i`` with left vector :math:`u_i` at location :math:`s_i`, the share of :math:`u_i` inside the span,
    :math:`\|C^\top u_i\|^2`, is compared with the share a rank-one spike lying wholly in the span would show at
    that location against the measured bulk: the BGN left overlap :math:`\ell(s_i) = -2\varphi(s_i)D(s_i)/D'(s_i)`
    (:meth:`~spikelearn.functional.d_transform.BulkMeasure.overlaps`; a finite strength never gives an overlap of
    1). Coverage is the mean over the outliers of :math:`\min(1, \|C^\top u_i\|^2 / \ell(s_i))`; ``None``
    without outliers.

    Args:
        U: the outliers' left vectors, ``(N, n_out)`` float64.
        C: the comparator's basis, ``(N, r)`` float64.
        outliers: the measured outliers (values).
        bulk: the measured bulk's law.
    """
    n = outliers.count
    if n == 0:
        return None
    inside = (C.T @ U).square().sum(dim=0).tolist()  # (n_out,)
    shares = []
    for share, value in zip(inside, outliers.values):
        expected = bulk.overlaps(value).left if value > bulk.top else 0.0
        shares.append(min(1.0, share / expected) if expected > 0 else min(1.0, share))
    return sum(shares) / n


def comparator_validity(coverage: float | None) -> str | None:
    r"""Why the finite-N count would be silently wrong for this snapshot, or ``None`` when it applies.

    The count feeds the strengths of the low-rank part in the basis ``C`` into the BGN formula of the measured bulk.
    It does not apply when the measured outliers' left vectors have left ``span(C)`` (coverage below
    ``MIN_COVERAGE``): what was learned is not in the basis, and the basis directions that clear the cut are not the
    outliers. (Without a bulk to measure, the engine withholds it before: a degenerate or heavy-tailed spectrum.)

    Example:
        >>> comparator_validity(0.5)[:24]
        'finite-N count withheld:'
    """
    if coverage is not None and coverage < MIN_COVERAGE:
        return (f"finite-N count withheld: coverage {coverage:.0%} < {MIN_COVERAGE:.0%} (the outliers' left vectors lie "
                "partly outside the comparator's basis, a, a^2, ... and the harmonics of the previous outliers, beyond "
                "what their strength explains), so its low-rank part does not hold what was learned")
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
