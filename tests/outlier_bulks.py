"""Bulks of known edge for tests: Marchenko-Pastur and non-MP population covariances (Silverstein's edge)."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize

def _population(shape: str, N: int, d: int) -> tuple[np.ndarray, str, float]:
    """(population variances, side 'cols'/'rows', overall scale) of a bulk shape."""
    if shape == "mp":
        return np.ones(d), "cols", 1.0
    if shape == "two_point":
        return np.where(np.arange(d) < d // 2, 1.0, 4.0), "cols", 1.0
    if shape == "row_profile":
        return (1.0 + 0.5 * np.sin(3.0 * np.arange(N) / N)) ** 2, "rows", 1.0
    if shape == "shrunk_uniform":
        return 0.4 + 1.2 * (np.arange(d) + 0.5) / d, "cols", 0.8
    raise ValueError(shape)


def _silverstein_edge(t: np.ndarray, gamma: float) -> float:
    """Right edge of the sample covariance ``(1/n) T^{1/2} Z^T Z T^{1/2}``, dimension/samples = gamma."""
    lo = -1.0 / t.max()

    def x(b: float) -> float:
        return -1.0 / b + gamma * float(np.mean(t / (1.0 + t * b)))

    res = optimize.minimize_scalar(x, bounds=(lo * (1 - 1e-9), -1e-9), method="bounded", options={"xatol": 1e-13})
    return float(res.fun)


def true_edge(shape: str, N: int, d: int) -> float:
    """Limiting top edge of the singular values of the bulk (independent of the detector)."""
    t, side, scale = _population(shape, N, d)
    if side == "cols":  # W^T W = (N/d) * sample covariance of N samples in dimension d
        return scale * math.sqrt(N / d * _silverstein_edge(t, d / N))
    return scale * math.sqrt(_silverstein_edge(t, N / d))  # W W^T = sample covariance of d samples in dim N


def bulk(shape: str, N: int, d: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A spike-free matrix ``(N, d)`` of the given bulk shape."""
    t, side, scale = _population(shape, N, d)
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(N, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    root = torch.from_numpy(np.sqrt(t))
    W = scale * (Z * root[None, :] if side == "cols" else Z * root[:, None])
    return W.to(dtype)


def _companion_stieltjes(t: np.ndarray, gamma: float, w: float) -> float:
    """The Stieltjes transform at real ``w`` above the edge of the companion ``(1/n) Z T Zᵀ`` (``n x n``) of the
    sample covariance ``(1/n) T^{1/2} Zᵀ Z T^{1/2}`` (dimension/samples = gamma): the root ``b`` of Silverstein's
    ``w = -1/b + gamma * mean(t / (1 + t b))`` on the branch between the edge's ``b`` and 0."""

    def x(b: float) -> float:
        return -1.0 / b + gamma * float(np.mean(t / (1.0 + t * b)))

    lo = -1.0 / t.max()
    edge_b = optimize.minimize_scalar(x, bounds=(lo * (1 - 1e-9), -1e-9), method="bounded",
                                      options={"xatol": 1e-14}).x
    return float(optimize.brentq(lambda b: x(b) - w, edge_b, -1e-12, xtol=1e-15))


def population_phi(shape: str, N: int, d: int, z: float) -> float:
    """``phi(z) = mean z / (z^2 - s^2)`` over the limiting law of the ``min(N, d)`` singular values of the bulk
    (Benaych-Georges & Nadakuditi 2012), from Silverstein's equation of its population covariance: independent of
    any sample of the bulk."""
    t, side, scale = _population(shape, N, d)
    z = z / scale
    if side == "cols":  # W W^T = (N/d) companion (N x N), gamma = d/N; W^T W = (N/d) * B (d x d)
        gamma, factor, small_is_companion = d / N, N / d, N <= d
    else:  # W W^T = B (N x N), gamma = N/d; W^T W = companion (d x d)
        gamma, factor, small_is_companion = N / d, 1.0, d <= N
    w = z * z / factor
    m_companion = _companion_stieltjes(t, gamma, w)
    m = m_companion if small_is_companion else (m_companion + (1.0 - gamma) / w) / gamma
    return float(-z * m / factor) / scale


def population_bgn_location(shape: str, N: int, d: int, theta: float) -> float:
    """Limiting location of the outlier of ``bulk + theta u v^T`` (``u``, ``v`` random unit vectors): the root of
    ``D(z) = 1/theta^2`` above the true edge, with ``D`` from :func:`population_phi` (``nan`` below the threshold)."""
    c = min(N, d) / max(N, d)

    def D(z: float) -> float:
        phi = population_phi(shape, N, d, z)
        return phi * (c * phi + (1.0 - c) / z)

    edge = true_edge(shape, N, d) * (1 + 1e-9)
    if D(edge) <= 1.0 / theta**2:
        return math.nan
    high = 2.0 * edge
    while D(high) > 1.0 / theta**2:
        high *= 2.0
    return float(optimize.brentq(lambda z: D(z) - 1.0 / theta**2, edge, high, xtol=1e-12))
