r"""Hermite polynomials and Gaussian expectations (SPEC §1, "Hermite conventions").

Symbols:
    ``He_k``: probabilists' Hermite polynomial, :math:`E[He_j(z) He_k(z)] = k!\,\delta_{jk}`, ``z ~ N(0, 1)``.
    ``he_k``: normalised :math:`He_k / \sqrt{k!}` (orthonormal).
    ``mu_k``: Hermite coefficient of an activation, :math:`\mu_k = E[\sigma(z) He_k(z)]`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "GaussianQuadrature",
    "gaussian_expectation",
    "gaussian_quadrature",
    "hermite",
    "hermite_coefficients",
    "hermite_normalized",
]

#: Gauss–Hermite nodes used for smooth integrands (exact for polynomials of degree < 2·161).
_GAUSS_NODES = 161
#: Half-width and spacing of the dense grid used for integrands with kinks (relu, user callables).
_GRID_HALF_WIDTH = 14.0
_GRID_POINTS = 280_001


class GaussianQuadrature(NamedTuple):
    """Nodes and weights integrating against the standard normal density.

    Attributes:
        nodes: ``(m,)`` float64 points.
        weights: ``(m,)`` float64 weights, summing to 1.
    """

    nodes: Tensor
    weights: Tensor


def hermite(z: Tensor, k: int) -> Tensor:
    r"""Probabilists' Hermite polynomial :math:`He_k(z)` by the three-term recurrence.

    .. math:: He_0 = 1,\quad He_1 = z,\quad He_{k+1}(z) = z\,He_k(z) - k\,He_{k-1}(z).

    Args:
        z: any shape.
        k: order, ``k >= 0``.

    Returns:
        Tensor of ``z``'s shape.

    Raises:
        ValueError: if ``k`` is negative.

    Example:
        >>> hermite(torch.tensor([1.0, 2.0, 3.0]), 3)  # z^3 - 3z
        tensor([-2.,  2., 18.])
    """
    if k < 0:
        raise ValueError(f"Hermite order `k` must be >= 0, got {k!r}.")
    previous, current = torch.ones_like(z), z
    if k == 0:
        return previous
    for j in range(1, k):
        previous, current = current, z * current - j * previous
    return current


def hermite_normalized(z: Tensor, k: int) -> Tensor:
    r"""Orthonormal Hermite polynomial :math:`he_k = He_k / \sqrt{k!}`.

    Example:
        >>> float(hermite_normalized(torch.tensor(1.0), 2))  # (1 - 1) / sqrt(2)
        0.0
    """
    return hermite(z, k) / math.sqrt(math.factorial(k))


def gaussian_quadrature(method: str = "gauss", dtype: torch.dtype = torch.float64) -> GaussianQuadrature:
    """Quadrature rule for :math:`E[f(z)]`, ``z ~ N(0, 1)``.

    Args:
        method: ``"gauss"`` (Gauss–Hermite, 161 nodes: exact for polynomials up to degree 321, spectrally
            accurate for analytic ``f``) or ``"grid"`` (trapezoid on a dense grid over ``[-14, 14]``,
            second order, robust to kinks such as relu's).
        dtype: floating dtype of the result.

    Raises:
        ValueError: for an unknown ``method``.

    Example:
        >>> q = gaussian_quadrature()
        >>> round(float((q.weights * q.nodes**2).sum()), 12)
        1.0
    """
    if method == "gauss":
        nodes, weights = np.polynomial.hermite_e.hermegauss(_GAUSS_NODES)
        weights = weights / weights.sum()
    elif method == "grid":
        nodes = np.linspace(-_GRID_HALF_WIDTH, _GRID_HALF_WIDTH, _GRID_POINTS)
        step = nodes[1] - nodes[0]
        weights = np.exp(-0.5 * nodes**2) / math.sqrt(2.0 * math.pi) * step
        weights[[0, -1]] *= 0.5
    else:
        raise ValueError(f"Expected `method` to be one of ['gauss', 'grid'], got {method!r}.")
    return GaussianQuadrature(torch.as_tensor(nodes, dtype=dtype), torch.as_tensor(weights, dtype=dtype))


def gaussian_expectation(f: Callable[[Tensor], Tensor], method: str = "gauss") -> float:
    """:math:`E[f(z)]` for ``z ~ N(0, 1)`` by :func:`gaussian_quadrature`.

    Example:
        >>> round(gaussian_expectation(lambda z: z**4), 10)
        3.0
    """
    quadrature = gaussian_quadrature(method)
    return float((quadrature.weights * f(quadrature.nodes)).sum())


def hermite_coefficients(activation: Callable[[Tensor], Tensor], max_order: int, method: str = "gauss") -> Tensor:
    r"""Hermite coefficients :math:`\mu_k = E[\sigma(z) He_k(z)]`, ``k = 0..max_order``.

    With them :math:`\sigma = \sum_k (\mu_k / k!) He_k` and, by Gaussian integration by parts,
    :math:`\mu_k = E[\sigma^{(k)}(z)]`.

    Args:
        activation: elementwise function of a float64 tensor.
        max_order: largest order ``K >= 0``.
        method: quadrature, see :func:`gaussian_quadrature` (use ``"grid"`` for kinks).

    Returns:
        ``(K + 1,)`` float64 tensor.

    Example:
        >>> mu = hermite_coefficients(torch.tanh, 3)
        >>> [abs(round(float(m), 6)) for m in mu[[0, 2]]]  # tanh is odd
        [0.0, 0.0]
    """
    if max_order < 0:
        raise ValueError(f"`max_order` must be >= 0, got {max_order!r}.")
    quadrature = gaussian_quadrature(method)
    values = activation(quadrature.nodes)
    return torch.stack([(quadrature.weights * values * hermite(quadrature.nodes, k)).sum() for k in range(max_order + 1)])
