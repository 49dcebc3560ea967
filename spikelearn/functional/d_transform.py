r"""The D-transform of a measured bulk: BGN locations and overlaps against the bulk a matrix actually has (SPEC §4).

Benaych-Georges & Nadakuditi (2012, *J. Multivariate Anal.* 111, Theorem 2.8–2.9) give, for ``X`` of shape
``(n, m)`` with ``n <= m``, ``c = n/m``, the law :math:`\mu` of its ``n`` singular values supported up to the edge
``E``, and a rank-one perturbation :math:`\widetilde X = X + \theta\, u v^\top` (``u``, ``v`` unit, in generic
position with ``X``):

.. math::
    \varphi(z) = \int \frac{z}{z^2 - t^2}\, d\mu(t), \qquad
    \tilde\varphi(z) = c\,\varphi(z) + \frac{1 - c}{z}, \qquad
    D(z) = \varphi(z)\,\tilde\varphi(z) \quad (z > E);

an outlier sits at the :math:`\rho > E` with :math:`D(\rho) = 1/\theta^2` when :math:`\theta^2 > 1/D(E^+)`, and
its singular vectors' overlaps with ``u`` (``n`` side) and ``v`` (``m`` side) are

.. math::
    \langle \hat u, u\rangle^2 \to \frac{-2\,\varphi(\rho)}{\theta^2 D'(\rho)}, \qquad
    \langle \hat v, v\rangle^2 \to \frac{-2\,\tilde\varphi(\rho)}{\theta^2 D'(\rho)}.

``D`` is positive and decreasing above the support, so the strengths whose outliers clear a cut ``z`` are those
above the **critical strength** :math:`\theta_c(z) = D(z)^{-1/2}`. For Marchenko–Pastur these reduce to the closed
forms of :func:`~spikelearn.functional.rmt.bgn_rank_one` (tests/test_d_transform.py).

Here :math:`\mu` is the *measured* bulk: the singular values of ``W`` below the cut (the outliers removed, weights
:math:`1/(n - n_{out})`), from the full spectrum when :math:`\min(N, d) \le` ``FULL_SPECTRUM_MAX`` and otherwise
from the engine's resolved top values as exact atoms plus the stochastic-Lanczos quadrature of the rest
(:func:`~spikelearn.functional.density.singular_value_density`, deflated by their right vectors). When ``N > d`` the
formulas apply to :math:`W^\top`: BGN's ``u`` side is ``W``'s right side.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from scipy.optimize import brentq
from torch import Tensor

from spikelearn.functional.density import singular_value_density
from spikelearn.functional.outliers import Outliers
from spikelearn.functional.spectrum import Spectrum

__all__ = ["FULL_SPECTRUM_MAX", "BulkMeasure", "Overlaps", "bulk_measure", "measured_bulk"]

FULL_SPECTRUM_MAX = 256
"""Up to this ``min(N, d)`` the bulk comes from the full spectrum (``svdvals``); above it, from stochastic Lanczos
quadrature (``2 * LANCZOS_STEPS`` thin products instead of a dense SVD)."""

LANCZOS_STEPS = 6
"""Lanczos steps per probe of the quadrature (its accuracy on ``D`` is measured in tests/test_d_transform.py)."""

PROBES = 8
"""Probes of the quadrature."""


class Overlaps(NamedTuple):
    """Squared overlaps of an outlier's singular vectors with the spike's own (in ``W``'s orientation)."""

    left: float
    right: float


class BulkMeasure(NamedTuple):
    r"""A bulk singular-value law :math:`\mu` as weighted atoms, and its D-transform (module docstring).

    Attributes:
        points: singular values, float64, ``(M,)``.
        weights: their masses, float64, ``(M,)``, summing to 1.
        c: :math:`\min(N, d)/\max(N, d) \le 1`.
        transposed: ``N > d`` (BGN's ``u`` side is ``W``'s right side).
        source: ``"full spectrum"`` or ``"stochastic Lanczos"``.
        matvecs: columns multiplied by ``W`` or ``Wᵀ`` to measure it (0 for a full spectrum).
    """

    points: Tensor
    weights: Tensor
    c: float
    transposed: bool
    source: str
    matvecs: int = 0

    @property
    def top(self) -> float:
        """The largest atom with mass: ``D`` is defined above it."""
        return float(self.points[self.weights > 0].max())

    def _check(self, z: float) -> float:
        z = float(z)
        if not z > self.top:
            raise ValueError(f"the D-transform is defined above the bulk (z > {self.top:.6g}), got z = {z!r}.")
        return z

    def phi(self, z: float) -> float:
        r""":math:`\varphi(z) = \int z/(z^2 - t^2)\, d\mu(t)`, ``z`` above the bulk."""
        z = self._check(z)
        return float((self.weights * z / (z * z - self.points**2)).sum())

    def phi_tilde(self, z: float) -> float:
        r""":math:`\tilde\varphi(z) = c\,\varphi(z) + (1 - c)/z` (the law of the ``m`` singular values)."""
        return self.c * self.phi(z) + (1.0 - self.c) / float(z)

    def d_transform(self, z: float) -> float:
        r""":math:`D(z) = \varphi(z)\,\tilde\varphi(z)`."""
        return self.phi(z) * self.phi_tilde(z)

    def d_derivative(self, z: float) -> float:
        r""":math:`D'(z) = \varphi'\tilde\varphi + \varphi\tilde\varphi'`, with
        :math:`\varphi'(z) = -\int (z^2 + t^2)/(z^2 - t^2)^2\, d\mu(t)`."""
        z = self._check(z)
        t2 = self.points**2
        dphi = -float((self.weights * (z * z + t2) / (z * z - t2) ** 2).sum())
        phi = self.phi(z)
        return dphi * self.phi_tilde(z) + phi * (self.c * dphi - (1.0 - self.c) / (z * z))

    def critical_strength(self, z: float) -> float:
        r""":math:`\theta_c(z) = D(z)^{-1/2}`: a spike of strength above it has its outlier above ``z`` (and one of
        exactly this strength has it at ``z``: BGN's inverse)."""
        return self.d_transform(z) ** -0.5

    def location(self, theta: float, above: float) -> float | None:
        r"""The outlier location :math:`\rho > \text{above}` with :math:`D(\rho) = 1/\theta^2` (``None`` when the
        strength ``theta`` (units of ``W``) is at or below :meth:`critical_strength` of ``above``)."""
        target = 1.0 / float(theta) ** 2 if theta > 0 else math.inf
        low = self._check(above)
        if not self.d_transform(low) > target:
            return None
        high = 2.0 * low
        while self.d_transform(high) > target:
            high *= 2.0
        return float(brentq(lambda z: self.d_transform(z) - target, low, high, xtol=1e-12 * high, rtol=1e-12))

    def overlaps(self, z: float) -> Overlaps:
        r"""Squared overlaps of the singular vectors of an outlier at ``z`` with its spike's, left and right of
        ``W`` (BGN's :math:`-2\varphi/(\theta^2 D')` and :math:`-2\tilde\varphi/(\theta^2 D')`, :math:`\theta^2 =
        1/D(z)`)."""
        scale = -2.0 * self.d_transform(z) / self.d_derivative(z)
        small, large = scale * self.phi(z), scale * self.phi_tilde(z)
        small, large = min(max(small, 0.0), 1.0), min(max(large, 0.0), 1.0)
        return Overlaps(large, small) if self.transposed else Overlaps(small, large)


def bulk_measure(values: Tensor, N: int, d: int, source: str = "full spectrum") -> BulkMeasure:
    """The uniform law on given bulk singular values (e.g. all but the outliers of a full spectrum).

    Args:
        values: the bulk's singular values, ``(M,)``, any order.
        N, d: the matrix's shape (for ``c`` and the orientation).
        source: how the values were obtained.
    """
    points = values.detach().to(torch.float64).flatten().cpu()
    if points.numel() == 0:
        raise ValueError("a bulk measure needs at least one value.")
    weights = torch.full_like(points, 1.0 / points.numel())
    return BulkMeasure(points, weights, min(N, d) / max(N, d), N > d, source)


def measured_bulk(W: Tensor, spectrum: Spectrum, outliers: Outliers, seed: int = 0) -> BulkMeasure:
    r"""The law of ``W``'s singular values below the cut (module docstring): the full spectrum when
    :math:`\min(N, d) \le` :data:`FULL_SPECTRUM_MAX`, else the resolved top values and a deflated stochastic-Lanczos
    quadrature of the rest.

    Args:
        W: ``(N, d)``.
        spectrum: the engine's top spectrum (refined values and their right vectors).
        outliers: the outliers to leave out.
        seed: the quadrature's probe seed.
    """
    N, d = W.shape
    n, r = min(N, d), outliers.count
    if n <= FULL_SPECTRUM_MAX:
        values = torch.linalg.svdvals(W.detach().to(torch.float64))
        return bulk_measure(values[r:], N, d)
    # the refined pairs (finite residual) become exact atoms and are deflated from the quadrature
    p = min(spectrum.right.shape[1], sum(1 for x in spectrum.residuals if math.isfinite(x)), n - 1)
    p = max(p, r)
    top = spectrum.values[:p].to(torch.float64)
    density = singular_value_density(W.detach(), num_probes=PROBES, lanczos_steps=LANCZOS_STEPS, top_values=top,
                                     top_vectors=spectrum.right[:, :p], seed=seed)
    bulk_weight = density.bulk_size / (n - r)  # the quadrature's share of the n - r bulk values
    nodes = density.nodes.flatten().cpu()
    node_weights = density.weights.flatten().cpu() * bulk_weight / density.nodes.shape[0]
    exact = top[r:].cpu()
    points = torch.cat([exact, nodes])
    weights = torch.cat([torch.full_like(exact, 1.0 / (n - r)), node_weights])
    return BulkMeasure(points, weights / weights.sum(), n / max(N, d), N > d, "stochastic Lanczos",
                       density.products * PROBES)
