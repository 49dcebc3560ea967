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

import bisect
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


# TW1 quantile table: (q, x_q = F_1^{-1}(q), dx_q/dt) with t = logit(q) = log(q / (1 - q)).
# Generated once by the Fredholm code above (80 nodes): x_q = brentq(F_1 - q, -3.9, 6, xtol=1e-13) and
# dx_q/dt = q (1 - q) / f_1(x_q), f_1 = F_1' by a central difference (h = 1e-4), on 49 nodes
# uniform in t over [logit 0.5, logit 0.9999] (q rounded to 6 decimals) plus the common quantiles
# 0.9, 0.95, 0.975, 0.99, 0.995, 0.999 (grid nodes within 0.02 of one in t dropped). x_q is nearly linear in t
# (slope 0.45-0.80), so cubic Hermite interpolation in t with these exact slopes is monotone (every
# interval passes the Fritsch-Carlson test) and agrees with the solver to 2e-7 (tests/test_rmt.py).
_TW1_QUANTILE_TABLE: tuple[tuple[float, float, float], ...] = (
    (0.5, -1.268574616581, 0.786977982468),
    (0.547823, -1.116757607587, 0.794952707315),
    (0.59478, -0.963695250141, 0.799916042360),
    (0.640064, -0.809970611159, 0.801889263239),
    (0.682984, -0.656147040151, 0.801004595061),
    (0.723002, -0.502745806637, 0.797487385593),
    (0.759745, -0.350250647712, 0.791632499503),
    (0.793009, -0.199078799437, 0.783777550863),
    (0.822743, -0.049572510362, 0.774276682803),
    (0.849018, 0.097975254276, 0.763480383761),
    (0.872005, 0.243359384370, 0.751716121365),
    (0.891937, 0.386412047157, 0.739280498497),
    (0.9, 0.450143289058, 0.733521973604),
    (0.909089, 0.527037731170, 0.726429905849),
    (0.923751, 0.665172178512, 0.713381402525),
    (0.936215, 0.800807177868, 0.700310847411),
    (0.946758, 0.933929828127, 0.687361053307),
    (0.95, 0.979316053470, 0.682938374083),
    (0.955642, 1.064605348007, 0.674637287480),
    (0.963101, 1.192860604149, 0.662222589893),
    (0.969345, 1.318746841099, 0.650175687760),
    (0.975, 1.453771351949, 0.637469035704),
    (0.978909, 1.563821641369, 0.627313929097),
    (0.982527, 1.683148768986, 0.616536288427),
    (0.985534, 1.800470188332, 0.606198383278),
    (0.988029, 1.915808480592, 0.596301073886),
    (0.99, 2.023449281380, 0.587311768820),
    (0.991813, 2.141037755796, 0.577771588395),
    (0.993233, 2.251086584162, 0.569111110727),
    (0.994408, 2.359500571675, 0.560833326832),
    (0.995, 2.422326585896, 0.556151279140),
    (0.99538, 2.466370165191, 0.552918941704),
    (0.996183, 2.571654547843, 0.545357557670),
    (0.996847, 2.675542527472, 0.538121927410),
    (0.997396, 2.778115098881, 0.531193164440),
    (0.99785, 2.879480970956, 0.524551068295),
    (0.998225, 2.979601880464, 0.518185484470),
    (0.998534, 3.078284519189, 0.512095533322),
    (0.99879, 3.176128558198, 0.506232420137),
    (0.999, 3.272196059002, 0.500640045873),
    (0.999175, 3.368067219619, 0.495216093235),
    (0.999319, 3.462629032126, 0.490014713874),
    (0.999438, 3.556315132223, 0.485001977074),
    (0.999536, 3.648832803893, 0.480184238160),
    (0.999617, 3.740545886517, 0.475533807355),
    (0.999684, 3.831584394017, 0.471036751574),
    (0.999739, 3.921267459390, 0.466718677562),
    (0.999785, 4.011364962633, 0.462488686036),
    (0.999822, 4.098346763139, 0.458504116438),
    (0.999853, 4.185720219658, 0.454596292619),
    (0.999879, 4.273838997253, 0.450747922038),
    (0.9999, 4.359420343913, 0.447096523652),
)
_TW1_TABLE_Q = tuple(row[0] for row in _TW1_QUANTILE_TABLE)
_TW1_TABLE_T = tuple(math.log(q / (1.0 - q)) for q in _TW1_TABLE_Q)


def _tw1_quantile_from_table(q: float) -> float:
    # Cubic Hermite interpolation of x_q in t = logit(q) between the two bracketing table nodes;
    # exact (to the table's 12 decimals) at the nodes. Needs _TW1_TABLE_Q[0] <= q <= _TW1_TABLE_Q[-1].
    i = min(max(bisect.bisect_right(_TW1_TABLE_Q, q) - 1, 0), len(_TW1_TABLE_Q) - 2)
    q0, x0, m0 = _TW1_QUANTILE_TABLE[i]
    q1, x1, m1 = _TW1_QUANTILE_TABLE[i + 1]
    if q == q0:
        return x0
    if q == q1:
        return x1
    t0, t1 = _TW1_TABLE_T[i], _TW1_TABLE_T[i + 1]
    h = t1 - t0
    u = (math.log(q / (1.0 - q)) - t0) / h
    u2, u3 = u * u, u * u * u
    return (
        (2 * u3 - 3 * u2 + 1) * x0 + (u3 - 2 * u2 + u) * h * m0 + (-2 * u3 + 3 * u2) * x1 + (u3 - u2) * h * m1
    )


@lru_cache(maxsize=64)
def tracy_widom1_quantile(quantile: float = 0.995) -> float:
    r"""Quantile of the Tracy–Widom ``beta = 1`` law: the ``x`` with :math:`F_1(x) = q`.

    For ``q`` in ``[0.5, 0.9999]`` (every margin of :func:`tracy_widom_margin`) it is read from a shipped
    table: cubic Hermite interpolation in :math:`t = \log(q/(1-q))` with the exact slope
    :math:`dx/dt = q(1-q)/f_1(x)`, monotone, exact at the nodes (which include 0.9, 0.95, 0.975, 0.99, 0.995,
    0.999) and within ``1e-6`` of the solver between them, so the first call costs no Fredholm
    determinant. Below 0.5 it is solved by Brent's method on :func:`tracy_widom1_cdf`. Both agree with the
    tabulated values (``0.95 -> 0.9793``, ``0.99 -> 2.0234``) to four decimals.

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
    if _TW1_TABLE_Q[0] <= q <= _TW1_TABLE_Q[-1]:
        return _tw1_quantile_from_table(q)
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
