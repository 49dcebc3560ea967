r"""Random-matrix reference formulas (SPEC §3): Marchenko–Pastur, BBP, BGN, Tracy–Widom.

Symbols (SPEC §1, §3):

* ``W`` of shape ``(N, d)``, aspect ratio ``c = N / d`` (``c > 1`` allowed).
* ``X`` the noise part, i.i.d. entries :math:`\mathcal N(0, s^2/d)`; ``scale`` is ``s``
  (``s = 1`` for the initial weights ``W0``).
* ``theta`` the strength of a rank-one spike :math:`\theta\, u v^\top`,
  :math:`\|u\| = \|v\| = 1`, in units of ``s``.

Every formula lives in exactly one function here; :mod:`spikelearn.functional.spectral` and
:mod:`spikelearn.functional.theory` import them.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
from scipy import optimize, special
from torch import Tensor

__all__ = [
    "MPEdges",
    "RankOnePrediction",
    "bbp_threshold",
    "bgn_rank_one",
    "mp_bulk_edge",
    "mp_density",
    "mp_edges",
    "mp_singular_density",
    "tracy_widom1_cdf",
    "tracy_widom1_quantile",
    "tracy_widom_margin",
    "tracy_widom_scale",
]


class MPEdges(NamedTuple):
    """Edges of the Marchenko–Pastur singular-value bulk.

    Attributes:
        lower: smallest non-zero singular value level :math:`s|1-\\sqrt c|`.
        upper: largest singular value level :math:`s(1+\\sqrt c)`.
    """

    lower: float
    upper: float


class RankOnePrediction(NamedTuple):
    """Benaych-Georges–Nadakuditi limit for ``W = X + theta u v^T``.

    Attributes:
        location: limit of the top singular value (the bulk edge when undetectable).
        left_overlap: limit of :math:`\\langle \\hat u, u\\rangle^2`.
        right_overlap: limit of :math:`\\langle \\hat v, v\\rangle^2`.
        detectable: whether ``theta`` exceeds the BBP threshold :math:`c^{1/4}`.
    """

    location: float
    left_overlap: float
    right_overlap: float
    detectable: bool


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"`{name}` must be a positive finite number, got {value!r}.")
    return value


def mp_bulk_edge(c: float, scale: float = 1.0) -> float:
    r"""Upper edge of the singular-value bulk of a pure-noise matrix.

    For ``X`` of shape ``(N, d)`` with i.i.d. :math:`\mathcal N(0, s^2/d)` entries and
    ``c = N / d``:

    .. math:: s_+ = s\,(1 + \sqrt{c}).

    Args:
        c: aspect ratio ``N / d``, positive (``c > 1`` is fine).
        scale: noise scale ``s``, positive.

    Returns:
        The edge :math:`s(1+\sqrt c)`.

    Raises:
        ValueError: if ``c`` or ``scale`` is not positive and finite.

    Example:
        >>> mp_bulk_edge(0.25)
        1.5
    """
    c = _check_positive("c", c)
    scale = _check_positive("scale", scale)
    return scale * (1.0 + math.sqrt(c))


def mp_edges(c: float, scale: float = 1.0) -> MPEdges:
    r"""Both edges of the Marchenko–Pastur singular-value bulk.

    .. math:: \bigl[s\,|1 - \sqrt{c}|,\; s\,(1 + \sqrt{c})\bigr].

    Args:
        c: aspect ratio ``N / d``, positive.
        scale: noise scale ``s``, positive.

    Returns:
        ``MPEdges(lower, upper)``.

    Raises:
        ValueError: if ``c`` or ``scale`` is not positive and finite.

    Example:
        >>> mp_edges(4.0)
        MPEdges(lower=1.0, upper=3.0)
    """
    upper = mp_bulk_edge(c, scale)
    return MPEdges(lower=float(scale) * abs(1.0 - math.sqrt(c)), upper=upper)


def mp_density(x: Tensor, c: float, scale: float = 1.0) -> Tensor:
    r"""Marchenko–Pastur density of the ``min(N, d)`` non-zero eigenvalues of :math:`W W^\top`.

    With :math:`\lambda_\pm = s^2 (1 \pm \sqrt c)^2` and the density normalised to one over the
    ``min(N, d)`` non-zero eigenvalues (the zero atom of mass :math:`|1 - 1/c|` for ``c > 1``
    or :math:`1 - c` of :math:`W^\top W` for ``c < 1`` is left out):

    .. math:: p(\lambda) = \frac{\sqrt{(\lambda_+ - \lambda)(\lambda - \lambda_-)}}
                                {2\pi s^2 \lambda \min(c, 1)}, \qquad
              \lambda \in [\lambda_-, \lambda_+].

    Args:
        x: eigenvalue grid, any shape.
        c: aspect ratio ``N / d``, positive.
        scale: noise scale ``s``, positive.

    Returns:
        The density at ``x`` (zero outside the support), same shape and dtype as ``x``.

    Raises:
        ValueError: if ``c`` or ``scale`` is not positive and finite.

    Example:
        >>> lam = torch.linspace(0.0, 4.0, 40001, dtype=torch.float64)
        >>> round(float(torch.trapezoid(mp_density(lam, 0.25), lam)), 3)
        1.0
    """
    lower, upper = mp_edges(c, scale)
    lam_lo, lam_hi = lower**2, upper**2
    inside = (x > lam_lo) & (x < lam_hi)
    xs = torch.where(inside, x, torch.full_like(x, 0.5 * (lam_lo + lam_hi)))
    dens = torch.sqrt((lam_hi - xs) * (xs - lam_lo)) / (2 * math.pi * scale**2 * xs * min(c, 1.0))
    return torch.where(inside, dens, torch.zeros_like(x))


def mp_singular_density(x: Tensor, c: float, scale: float = 1.0) -> Tensor:
    r"""Marchenko–Pastur density of the ``min(N, d)`` non-zero singular values of ``W``.

    Change of variables :math:`\lambda = x^2` in :func:`mp_density`:

    .. math:: q(x) = 2 x\, p(x^2), \qquad x \in [s|1-\sqrt c|,\, s(1+\sqrt c)].

    Args:
        x: singular-value grid, any shape.
        c: aspect ratio ``N / d``, positive.
        scale: noise scale ``s``, positive.

    Returns:
        The density at ``x``, same shape and dtype as ``x``.

    Raises:
        ValueError: if ``c`` or ``scale`` is not positive and finite.

    Example:
        >>> s = torch.linspace(0.0, 3.0, 30001, dtype=torch.float64)
        >>> round(float(torch.trapezoid(mp_singular_density(s, 2.0), s)), 3)
        1.0
    """
    return 2.0 * x * mp_density(x * x, c, scale)


def bbp_threshold(c: float) -> float:
    r"""BBP detection threshold of a rank-one spike, in units of the noise scale.

    .. math:: \theta_c = c^{1/4}.

    For ``c > 1`` the transpose rule (SPEC §3: ratio ``1/c``, strength ``theta/sqrt(c)``)
    gives :math:`\theta/\sqrt c > c^{-1/4}`, i.e. the same :math:`\theta > c^{1/4}`.

    Args:
        c: aspect ratio ``N / d``, positive.

    Returns:
        :math:`c^{1/4}`.

    Raises:
        ValueError: if ``c`` is not positive and finite.

    Example:
        >>> bbp_threshold(16.0)
        2.0
    """
    return _check_positive("c", c) ** 0.25


def _bgn_small_ratio(theta: float, c: float) -> tuple[float, float, float]:
    # c <= 1, theta > c**0.25: location, <u_hat,u>^2, <v_hat,v>^2 (SPEC §3)
    t2 = theta * theta
    location = math.sqrt((1.0 + t2) * (c + t2)) / theta
    left = 1.0 - c * (1.0 + t2) / (t2 * (t2 + c))
    right = 1.0 - (c + t2) / (t2 * (t2 + 1.0))
    return location, left, right


def bgn_rank_one(theta: float, c: float, scale: float = 1.0) -> RankOnePrediction:
    r"""Benaych-Georges–Nadakuditi limits for a rank-one spike ``W = X + theta*s u v^T``.

    For :math:`c \le 1` and :math:`\theta > c^{1/4}` (``theta`` in units of ``s``):

    .. math::
        s_1 \to s\,\frac{\sqrt{(1+\theta^2)(c+\theta^2)}}{\theta}, \quad
        \langle\hat u,u\rangle^2 \to 1 - \frac{c(1+\theta^2)}{\theta^2(\theta^2+c)}, \quad
        \langle\hat v,v\rangle^2 \to 1 - \frac{c+\theta^2}{\theta^2(\theta^2+1)};

    below the threshold :math:`s_1 \to s(1+\sqrt c)` and both overlaps vanish. For ``c > 1``
    the formulas are applied to :math:`W^\top/\sqrt c` (ratio ``1/c``, strength
    :math:`\theta/\sqrt c`), the location is multiplied back by :math:`\sqrt c` and the two
    overlaps are swapped; this reproduces the displayed closed forms with the same ``c``.

    Args:
        theta: spike strength in units of the noise scale, non-negative.
        c: aspect ratio ``N / d``, positive.
        scale: noise scale ``s``, positive.

    Returns:
        ``RankOnePrediction(location, left_overlap, right_overlap, detectable)``.

    Raises:
        ValueError: if ``theta`` is negative or not finite, or ``c``/``scale`` not positive.

    Example:
        >>> p = bgn_rank_one(2.0, 1.0)
        >>> round(p.location, 4), round(p.left_overlap, 4), round(p.right_overlap, 4)
        (2.5, 0.75, 0.75)
    """
    theta = float(theta)
    if not (math.isfinite(theta) and theta >= 0.0):
        raise ValueError(f"`theta` must be a non-negative finite number, got {theta!r}.")
    c = _check_positive("c", c)
    scale = _check_positive("scale", scale)
    if theta <= bbp_threshold(c):
        return RankOnePrediction(mp_bulk_edge(c, scale), 0.0, 0.0, False)
    if c <= 1.0:
        location, left, right = _bgn_small_ratio(theta, c)
    else:  # transpose rule of SPEC §3
        root_c = math.sqrt(c)
        location_t, left_t, right_t = _bgn_small_ratio(theta / root_c, 1.0 / c)
        location, left, right = root_c * location_t, right_t, left_t
    return RankOnePrediction(scale * location, left, right, True)


@lru_cache(maxsize=256)
def _tw1_cdf_cached(x: float, nodes: int) -> float:
    # Bornemann (2010): F1(x) = det(I - K) on L^2(x, inf), K(s, t) = Ai((s + t) / 2) / 2.
    # Gauss-Legendre on [x, x + 16]: Ai((s+t)/2) < 1e-12 beyond, the quadrature converges
    # exponentially in ``nodes``.
    z, w = np.polynomial.legendre.leggauss(nodes)
    length = 16.0
    s = x + 0.5 * length * (z + 1.0)
    w = 0.5 * length * w
    kernel = 0.5 * special.airy(0.5 * (s[:, None] + s[None, :]))[0]
    root_w = np.sqrt(w)
    mat = np.eye(nodes) - root_w[:, None] * kernel * root_w[None, :]
    return float(np.linalg.det(mat))


def tracy_widom1_cdf(x: float) -> float:
    r"""Cumulative distribution of the Tracy–Widom law for real matrices (``beta = 1``).

    Computed as a Fredholm determinant (Bornemann 2010), discretised by Gauss–Legendre
    quadrature (80 nodes, error below ``1e-10`` on ``x > -4``):

    .. math:: F_1(x) = \det\bigl(I - K\bigr)_{L^2(x,\infty)}, \qquad
              K(s,t) = \tfrac12 \operatorname{Ai}\!\bigl(\tfrac{s+t}{2}\bigr).

    Args:
        x: argument, finite.

    Returns:
        :math:`F_1(x)`.

    Raises:
        ValueError: if ``x`` is not finite.

    Example:
        >>> round(tracy_widom1_cdf(0.9793), 3)
        0.95
    """
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"`x` must be finite, got {x!r}.")
    return min(1.0, max(0.0, _tw1_cdf_cached(x, 80)))


@lru_cache(maxsize=64)
def tracy_widom1_quantile(quantile: float = 0.995) -> float:
    r"""Quantile of the Tracy–Widom ``beta = 1`` law: the ``x`` with :math:`F_1(x) = q`.

    Solved by Brent's method on :func:`tracy_widom1_cdf`; agrees with the tabulated values
    (``0.95 -> 0.9793``, ``0.99 -> 2.0234``) to four decimals.

    Args:
        quantile: probability ``q`` in ``[0.01, 0.9999]``.

    Returns:
        The ``q``-quantile of TW1.

    Raises:
        ValueError: if ``quantile`` is outside ``[0.01, 0.9999]``.

    Example:
        >>> round(tracy_widom1_quantile(0.99), 3)
        2.023
    """
    q = float(quantile)
    if not (0.01 <= q <= 0.9999):
        raise ValueError(f"`quantile` must lie in [0.01, 0.9999], got {quantile!r}.")
    return float(optimize.brentq(lambda x: _tw1_cdf_cached(x, 80) - q, -3.9, 6.0, xtol=1e-10))


def tracy_widom_scale(N: int, d: int) -> float:
    r"""Tracy–Widom fluctuation scale of the top singular value of ``X`` (``s = 1``).

    Johnstone (2001): for ``Z`` of shape ``(N, d)`` with standard entries,
    :math:`(\lambda_1(Z^\top Z) - \mu)/\sigma \to \mathrm{TW}_1` with
    :math:`\mu = (\sqrt N + \sqrt d)^2`,
    :math:`\sigma = (\sqrt N + \sqrt d)(N^{-1/2} + d^{-1/2})^{1/3}`. For
    :math:`X = Z/\sqrt d` a first-order expansion of :math:`s_1 = \sqrt{\lambda_1/d}` gives

    .. math:: s_1(X) \approx (1 + \sqrt c) + \sigma_{N,d}\, \mathrm{TW}_1, \qquad
              \sigma_{N,d} = \frac{(N^{-1/2} + d^{-1/2})^{1/3}}{2\sqrt d},

    which is :math:`2^{1/3} d^{-2/3}/2` for ``N = d`` and in general of order
    :math:`\min(N,d)^{-2/3}` (times an aspect factor at most 1).

    Args:
        N: number of rows, positive.
        d: number of columns, positive.

    Returns:
        :math:`\sigma_{N,d}`.

    Raises:
        ValueError: if ``N`` or ``d`` is not a positive integer.

    Example:
        >>> round(tracy_widom_scale(1000, 1000) * 1000 ** (2 / 3), 4)
        0.63
    """
    for name, value in (("N", N), ("d", d)):
        if int(value) != value or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return (N**-0.5 + d**-0.5) ** (1.0 / 3.0) / (2.0 * math.sqrt(d))


def tracy_widom_margin(N: int, d: int, quantile: float = 0.995, scale: float = 1.0) -> float:
    r"""Tracy–Widom margin ``m`` above the bulk edge used to call an outlier (SPEC §4).

    .. math:: m = s\, \sigma_{N,d}\, F_1^{-1}(q),

    with :math:`\sigma_{N,d}` from :func:`tracy_widom_scale` and :math:`F_1^{-1}(q)` from
    :func:`tracy_widom1_quantile` (``q = 0.995`` by default: a pure-noise top singular value
    exceeds ``edge + m`` with probability about 0.5 %).

    Args:
        N: number of rows.
        d: number of columns.
        quantile: TW1 quantile ``q`` in ``[0.5, 0.9999]`` (a margin must be positive).
        scale: noise scale ``s``, positive.

    Returns:
        The margin ``m``.

    Raises:
        ValueError: if ``quantile`` is outside ``[0.5, 0.9999]`` or a size/scale is invalid.

    Example:
        >>> round(tracy_widom_margin(1000, 1000), 4)
        0.0153
    """
    q = float(quantile)
    if not (0.5 <= q <= 0.9999):
        raise ValueError(f"`quantile` must lie in [0.5, 0.9999], got {quantile!r}.")
    scale = _check_positive("scale", scale)
    return scale * tracy_widom_scale(N, d) * max(tracy_widom1_quantile(q), 0.0)
