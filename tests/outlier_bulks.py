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
