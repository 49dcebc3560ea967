r"""Stage 2b of the engine (SPEC §4 "Irregular bulks"): is the top of the bulk a regular soft edge, what is the tail
exponent of the top of the spectrum, and which outlier candidates are localised.

The outlier rule rests on edge universality: near a *regular* soft edge the top bulk values follow the square-root law
and fluctuate on the Tracy–Widom scale, with delocalised singular vectors. When the entries are heavy-tailed (infinite
fourth moment, e.g. Student-t with :math:`\nu < 4`) the largest values are carried by the largest entries (Auffinger,
Ben Arous & Péché 2009, *Poisson convergence for the largest eigenvalues of heavy tailed random matrices*): their
singular vectors live on the few rows and columns of those entries. Such values are not learned directions, and the
rule, which sees only values, counts them. This stage reads four things off what the spectrum stage already has:

* **localisation** of each refined singular pair: the inverse participation ratio
  :math:`\mathrm{IPR}(x) = \sum_i x_i^4` of a unit vector :math:`x \in \mathbb R^n` is :math:`\approx 3/n` for a
  delocalised (Gaussian-like) vector and :math:`O(1)` for one on a few coordinates. A pair's localisation is
  :math:`\ell = \max(N\,\mathrm{IPR}(u), d\,\mathrm{IPR}(v))/3` (1 when both are delocalised); a side is *localised*
  when its IPR is at least :data:`LOCALISED_IPR` (on about ten coordinates or fewer) *and* :math:`n\,\mathrm{IPR}/3`
  at least :data:`LOCALISED` (twenty times a delocalised vector's), which leaves sides under 60 out. Learned
  directions of the two-layer model are not localised in this sense, although their left vectors lean on the
  neurons of large :math:`|a_i|` (:math:`a^{\circ k}`): the largest IPR among the candidates and the window of the
  contract's two-step and many-step runs (N = 400, 512) is 0.076 (:math:`\ell` = 10); the top candidates of
  Student-t :math:`\nu \le 3` and Pareto profiles have IPR 0.25–1.
* **edge regularity**: ``edge_regular`` is false when any of the candidates or of the ``window`` bulk values just
  below them (the values the edge was fitted from) is localised: the top of the spectrum is then not a square-root
  edge with delocalised vectors (edge universality's picture) but the largest entries of a heavy tail. A regular
  bulk with a learned direction that lives on a few coordinates is therefore also flagged, and that direction is not
  counted (SPEC §4: a value localised on a few coordinates is not counted as a learned direction).
* the **tail exponent** of the top of the spectrum, Hill's estimator (Hill 1975, *A simple general approach to
  inference about the tail of a distribution*) over the top ``k`` = :data:`TAIL_K` singular values (fewer when fewer
  are refined), :math:`1/\hat\zeta = \frac1k\sum_{i\le k}\log(s_i/s_{k+1})`: the exponent of
  :math:`P(s > x) \sim x^{-\zeta}`. It is logged in weightwatcher's convention, the exponent of the power-law
  *density* of the eigenvalues :math:`\lambda = s^2` of :math:`W^\top W`,

  .. math:: \alpha = 1 + \hat\zeta/2 ,

  which is the maximum-likelihood power-law exponent of Clauset, Shalizi & Newman 2009 (eq. 3.1) on the top ``k``
  eigenvalues with :math:`x_{\min} = \lambda_{k+1}` (weightwatcher chooses :math:`x_{\min}` by their KS rule instead,
  over the full spectrum). For iid entries with tail index :math:`\nu < 4`, :math:`\zeta \to \nu` and
  :math:`\alpha \to 1 + \nu/2` as the size grows, but slowly: at N = 400–800 the top 16 values of Student-t
  :math:`\nu = 3` still mix with the bulk's edge (:math:`\hat\zeta` 5–18), so ``alpha`` is a trend to watch, not a
  test; on planted Pareto spectra it is unbiased in :math:`1/\zeta` (tests/test_regularity.py).
* the edge fit's own residual: the RMS residual of the window's fit to :math:`s_{n+j} \approx E - \kappa(j-\frac12)^{2/3}`
  in units of its Tracy–Widom scale (recorded; it does not enter the decision: 0.4–0.6 on Gaussian bulks and 0.45–1.2
  on the heavy tails above, because the window below the candidates is smooth either way).

When the edge is not regular, :func:`counted_outliers` keeps only the candidates above every localised one (a
delocalised value far above the heavy-tailed top is still counted; a localised one, or one inside the heavy tail, is
not) and the count's status is ``"heavy_tailed"``.

Symbols: ``W`` ``(N, d)``, :math:`u_i` ``(N,)`` and :math:`v_i` ``(d,)`` the left and right singular vectors of
:math:`s_i`, ``n`` the rule's candidate count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from torch import Tensor

from spikelearn.functional.outliers import EDGE_WINDOW, Outliers, fit_soft_edge

__all__ = [
    "LOCALISED",
    "LOCALISED_IPR",
    "MIN_DIMENSION",
    "TAIL_K",
    "Regularity",
    "counted_outliers",
    "edge_regularity",
    "edge_residual",
    "hill_tail_index",
    "inverse_participation_ratio",
    "localisation",
    "tail_alpha",
]

LOCALISED = 20.0
"""A side of dimension ``n`` is localised when :math:`n\\,\\mathrm{IPR}/3` is at least this (and the IPR at least
:data:`LOCALISED_IPR`)."""

LOCALISED_IPR = 0.1
"""A side is localised only when its IPR is at least this: it lives on about ``1/0.1 = 10`` coordinates or fewer."""

MIN_DIMENSION = 64
"""Localisation is judged only on a side of at least this dimension (below it ``3/n`` and ``O(1)`` are too close)."""

TAIL_K = 16
"""Top values Hill's estimator reads (``k``; the ``k + 1``-th is :math:`x_{\\min}`)."""


class Regularity(NamedTuple):
    """What the regularity stage says about the top of one spectrum.

    Attributes:
        edge_regular: whether the top of the bulk is a regular soft edge (``None`` for a degenerate bulk).
        tail_alpha: :math:`\\alpha = 1 + \\hat\\zeta/2` (weightwatcher's convention; ``nan`` when under 3 values).
        tail_k: the ``k`` of Hill's estimator.
        edge_residual: RMS residual of the edge fit in its Tracy–Widom units (``nan`` without an edge fit).
        candidates: the outlier rule's count before the localisation filter.
        localisation: :math:`\\ell` of each candidate (1: delocalised; ``N/3`` or ``d/3``: on one coordinate).
        localised: per candidate, whether it is localised (:func:`localisation`).
        status: ``"regular"``, ``"heavy_tailed"`` or ``"degenerate"``.
    """

    edge_regular: bool | None
    tail_alpha: float
    tail_k: int
    edge_residual: float
    candidates: int
    localisation: list[float]
    localised: list[bool]
    status: str


def inverse_participation_ratio(X: Tensor) -> Tensor:
    r"""Inverse participation ratio :math:`\sum_i x_i^4` of each column of ``X`` ``(n, p)`` (normalised first), float64.

    Example:
        >>> import torch
        >>> inverse_participation_ratio(torch.tensor([[1.0, 0.5], [0.0, 0.5], [0.0, 0.5], [0.0, 0.5]])).tolist()
        [1.0, 0.25]
    """
    X = X.double()
    norms = X.norm(dim=0).clamp_min(1e-300)
    return (X / norms).pow(4).sum(dim=0)


def localisation(left: Tensor, right: Tensor) -> tuple[list[float], list[bool]]:
    r""":math:`\ell_i = \max(N\,\mathrm{IPR}(u_i), d\,\mathrm{IPR}(v_i))/3` of each pair, and whether it is localised
    (a side with IPR :math:`\ge` :data:`LOCALISED_IPR` and :math:`n\,\mathrm{IPR}/3 \ge` :data:`LOCALISED`); a side of
    dimension below :data:`MIN_DIMENSION` is left out (its :math:`\ell` is 1 when both are).

    Args:
        left: ``(N, p)`` left singular vectors.
        right: ``(d, p)`` right singular vectors.

    Example:
        >>> import torch
        >>> e = torch.zeros(400, 1, dtype=torch.float64); e[3] = 1.0
        >>> ell, localised = localisation(e, torch.full((300, 1), 300**-0.5, dtype=torch.float64))
        >>> round(ell[0], 1), localised
        (133.3, [True])
    """
    p = left.shape[1]
    ell, localised = [1.0] * p, [False] * p
    for X in (left, right):
        n = X.shape[0]
        if n < MIN_DIMENSION or p == 0:
            continue
        for i, ipr in enumerate(inverse_participation_ratio(X).tolist()):
            ell[i] = max(ell[i], n * ipr / 3.0)
            localised[i] = localised[i] or (ipr >= LOCALISED_IPR and n * ipr / 3.0 >= LOCALISED)
    return ell, localised


def hill_tail_index(values: Sequence[float], k: int = TAIL_K) -> float:
    r"""Hill's estimator :math:`\hat\zeta` of :math:`P(s > x) \sim x^{-\zeta}` from the top ``k + 1`` of ``values``
    (descending, positive): :math:`1/\hat\zeta = \frac1k \sum_{i \le k} \log(s_i/s_{k+1})`. Fewer values: ``k`` is
    ``len(values) - 1``; ``nan`` under 3 positive values or when the top ``k + 1`` are equal.

    Example:
        >>> round(hill_tail_index([(i / 1000) ** -0.5 for i in range(1, 18)]), 3)  # Pareto quantiles, zeta = 2
        2.183
    """
    vals = [float(v) for v in values if float(v) > 0]
    k = min(int(k), len(vals) - 1)
    if k < 2:
        return math.nan
    logs = math.fsum(math.log(vals[i] / vals[k]) for i in range(k))
    return k / logs if logs > 0 else math.nan


def tail_alpha(values: Sequence[float], k: int = TAIL_K) -> float:
    r"""The tail exponent :math:`\alpha = 1 + \hat\zeta/2` of the top singular ``values`` in weightwatcher's
    convention (the power-law density exponent of the eigenvalues :math:`s^2`); :func:`hill_tail_index` gives
    :math:`\hat\zeta`.

    Example:
        >>> round(tail_alpha([(i / 1000) ** -0.5 for i in range(1, 18)]), 3)
        2.091
    """
    return 1.0 + hill_tail_index(values, k) / 2.0


def edge_residual(window: Sequence[float]) -> float:
    r"""RMS residual of :func:`~spikelearn.functional.outliers.fit_soft_edge` on ``window`` (``w >= 3`` bulk values,
    descending), in units of the fitted Tracy–Widom scale (``nan`` under 3 values or at a zero scale).

    Example:
        >>> round(edge_residual([2.0 - 0.01 * (j + 0.5) ** (2 / 3) for j in range(12)]), 9)
        0.0
    """
    y = [float(v) for v in window]
    if len(y) < 3:
        return math.nan
    fit = fit_soft_edge(y)
    if not fit.scale > 0:
        return math.nan
    kappa = fit.scale * (1.5 * math.pi) ** (2.0 / 3.0)
    rss = math.fsum((yi - fit.edge + kappa * (j + 0.5) ** (2.0 / 3.0)) ** 2 for j, yi in enumerate(y))
    return math.sqrt(rss / max(len(y) - 2, 1)) / fit.scale


def edge_regularity(
    values: Sequence[float], left: Tensor, right: Tensor, outliers: Outliers, window: int = EDGE_WINDOW
) -> Regularity:
    """The regularity stage on the refined pairs of a spectrum (module docstring).

    Args:
        values: the top singular values, descending (the refined ones first).
        left: ``(N, p)`` left vectors of the first ``p`` values.
        right: ``(d, p)`` right vectors.
        outliers: the outlier rule's answer (its ``count`` are the candidates).
        window: bulk values below the candidates whose localisation, with the candidates', decides ``edge_regular``.

    Example:
        >>> import torch
        >>> from spikelearn.functional.inputs import EngineConfig
        >>> from spikelearn.functional.spectrum import top_spectrum
        >>> from spikelearn.functional.inputs import EngineState
        >>> W = torch.randn(200, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 200**0.5
        >>> sp, out = top_spectrum(W, EngineConfig(), EngineState(), float(W.square().sum()))
        >>> reg = edge_regularity(sp.values.tolist(), sp.left, sp.right, out)
        >>> reg.edge_regular, reg.status, reg.tail_alpha > 5
        (True, 'regular', True)
    """
    vals = [float(v) for v in values]
    p = left.shape[1]
    n = outliers.count
    refined = vals[:p]
    k = min(TAIL_K, len(refined) - 1)
    alpha = tail_alpha(refined, k) if k >= 2 else math.nan
    if outliers.method == "degenerate":
        return Regularity(None, alpha, max(k, 0), math.nan, 0, [], [], "degenerate")
    top = min(p, n + window)
    ell, loc = localisation(left[:, :top], right[:, :top])
    residual = edge_residual(vals[n : n + window]) if outliers.method == "edge_fit" else math.nan
    regular = not any(loc)
    cand = ell[:n] + [math.nan] * (n - len(ell[:n]))
    localised = loc[:n] + [False] * (n - len(loc[:n]))
    return Regularity(regular, alpha, max(k, 0), residual, n, cand, localised,
                      "regular" if regular else "heavy_tailed")


def counted_outliers(outliers: Outliers, regularity: Regularity) -> Outliers:
    """The outliers that are counted: all the rule's candidates on a regular edge; on a heavy-tailed one, the
    candidates above every localised candidate (the top run of delocalised values).

    Example:
        >>> from spikelearn.functional.outliers import outliers_above
        >>> out = outliers_above([9.0, 5.0, 4.0, 1.0], N=100, d=100, frobenius_sq=200.0, edge=1.0, cut=2.0,
        ...                      scale=0.1, method="toy")
        >>> reg = Regularity(False, 2.0, 3, 0.5, 3, [1.0, 40.0, 1.0], [False, True, False], "heavy_tailed")
        >>> counted_outliers(out, reg).values
        [9.0]
    """
    if regularity.edge_regular is not False:
        return outliers
    keep = 0
    while keep < outliers.count and not regularity.localised[keep]:
        keep += 1
    if keep == outliers.count:
        return outliers
    status = outliers.status[:keep]
    return outliers._replace(
        count=keep, values=outliers.values[:keep], status=status, gaps=outliers.gaps[:keep],
        margins=outliers.margins[:keep], marginal=status.count("marginal"), top_bulk_value=outliers.values[keep],
    )
