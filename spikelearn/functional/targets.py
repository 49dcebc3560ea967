r"""Targets ``y = g(Bᵀx) + ε`` and their exponents (SPEC §1, "Targets").

Symbols:
    ``B``: ``(d, r)`` orthonormal target directions ``β_1 … β_r`` (random, seeded).
    ``g``: the link ``R^r → R``, normalised so that :math:`E y = 0`, :math:`E y^2 = 1` (noise aside).
    ``IE(β_j)``: information exponent :math:`\min\{k \ge 1: E[g(z) He_k(z_j)] \ne 0\}`.
    ``p*(β_j)``: reuse exponent :math:`\min\{p \ge 1: E[z_j\, y^p] \ne 0\}` (``inf`` for even links).

Built-in names (:func:`make_target`): ``he1`` … ``he6``; Hermite sums in one direction such as
``he2+he3`` (:math:`(he_2 + he_3)/\sqrt 2`); ``bounded_he1`` … ``bounded_he6``, bounded trigonometric
links with the same exponents as ``he_k`` (e.g. centred :math:`\cos z` for ``he2``,
:math:`\sin 2z - 2e^{-3/2}\sin z` for ``he3``); ``additive`` (:math:`\sum_j g_j(z_j)` over named
single-index components); ``staircase`` (:math:`(z_1 + z_1 z_2)/\sqrt 2`); ``noise`` (``y`` independent of
``x``, unit variance).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from spikelearn.functional.hermite import gaussian_quadrature, hermite, hermite_normalized

__all__ = ["TARGET_NAMES", "Target", "make_target", "target_directions"]

#: Largest order / power searched for the exponents; beyond it the exponent is reported as ``inf``.
_MAX_EXPONENT = 12
#: A moment ``E[u v]`` is taken as exactly zero when ``|E[u v]| <= _ZERO_TOL · sqrt(E[u²] E[v²])`` (Cauchy–Schwarz
#: scale); the quadrature is exact or spectrally accurate, so its relative error is ~1e-13 for every link here.
_ZERO_TOL = 1e-9
_MAX_ADDITIVE_RANK = 4
_HERMITE_RE = re.compile(r"^(bounded_)?he([1-6])$")
_HERMITE_SUM_RE = re.compile(r"^(bounded_)?he[1-6](\+(bounded_)?he[1-6])+$")

TARGET_NAMES: tuple[str, ...] = (
    *(f"he{k}" for k in range(1, 7)),
    *(f"bounded_he{k}" for k in range(1, 7)),
    "he2+he3",
    "additive",
    "staircase",
    "noise",
)
"""Built-in target names; any ``heI+heJ+…`` sum of orders 1–6 is accepted too."""

Link = Callable[[Tensor], Tensor]  # (n, r) -> (n,)


@dataclass(frozen=True)
class Target:
    """A normalised link with its per-direction exponents.

    Attributes:
        name: the name it was built from.
        rank: number of directions ``r`` (0 for pure noise).
        information_exponents: ``IE(β_j)`` per direction (``math.inf`` when no order up to 12 correlates).
        reuse_exponents: ``p*(β_j)`` per direction (``math.inf`` for even links).
        noise_variance: variance of the intrinsic noise of the target (1 for ``noise``, else 0).
    """

    name: str
    rank: int
    information_exponents: tuple[float, ...]
    reuse_exponents: tuple[float, ...]
    noise_variance: float = 0.0
    raw_link: Link = field(repr=False, default=lambda z: torch.zeros(z.shape[0], dtype=z.dtype, device=z.device))
    mean: float = field(repr=False, default=0.0)
    std: float = field(repr=False, default=1.0)

    def link(self, z: Tensor) -> Tensor:
        r"""Normalised link :math:`(g_{raw}(z) - m)/s` of projected inputs ``z = X B``, shape ``(n, r) → (n,)``."""
        return (self.raw_link(z) - self.mean) / self.std

    def __call__(self, X: Tensor, B: Tensor) -> Tensor:
        """Noiseless target values ``g(X B)`` for ``X`` of shape ``(n, d)`` and ``B`` of shape ``(d, r)``."""
        return self.link(X @ B)


def target_directions(d: int, rank: int, seed: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Random orthonormal directions ``B``, a pure function of ``(d, rank, seed)``.

    QR of a ``(d, rank)`` standard Gaussian drawn on the CPU in float64, signs fixed so that ``R`` has a positive
    diagonal (so the result is Haar-distributed and reproducible on any device).

    Raises:
        ValueError: if ``rank > d`` or ``d < 1``.

    Example:
        >>> B = target_directions(5, 2, seed=0)
        >>> torch.allclose(B.T @ B, torch.eye(2, dtype=B.dtype))
        True
    """
    if d < 1:
        raise ValueError(f"`d` must be >= 1, got {d!r}.")
    if not 0 <= rank <= d:
        raise ValueError(f"The target needs {rank} directions but the input dimension `d` is {d}; need rank <= d.")
    generator = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(d, rank, generator=generator, dtype=torch.float64))
    signs = torch.sign(torch.diagonal(R))
    signs[signs == 0] = 1.0
    return (Q * signs).to(dtype)


def _tensor_quadrature(rank: int) -> tuple[Tensor, Tensor]:
    """Product Gauss–Hermite rule in ``rank`` dimensions: nodes ``(m, rank)``, weights ``(m,)``."""
    quadrature = gaussian_quadrature("gauss")
    if rank <= 1:
        return quadrature.nodes[:, None], quadrature.weights
    per_axis = {2: 80, 3: 40, 4: 22}[rank]
    nodes_1d, weights_1d = (torch.as_tensor(v, dtype=torch.float64) for v in _hermegauss(per_axis))
    index = torch.cartesian_prod(*[torch.arange(per_axis)] * rank).reshape(-1, rank)  # (m, rank)
    return nodes_1d[index], weights_1d[index].prod(dim=1)


def _hermegauss(m: int) -> tuple[list[float], list[float]]:
    import numpy as np

    x, w = np.polynomial.hermite_e.hermegauss(m)
    return x.tolist(), (w / w.sum()).tolist()


def _first_correlated(u: Sequence[Tensor], v: Tensor | Sequence[Tensor], weights: Tensor) -> float:
    """First index ``i >= 1`` whose moment ``E[u_i v_i]`` is non-zero on the Cauchy–Schwarz scale, else ``inf``."""
    for index, u_i in enumerate(u, start=1):
        v_i = v if isinstance(v, Tensor) else v[index - 1]
        moment = float((weights * u_i * v_i).sum())
        scale = math.sqrt(float((weights * u_i**2).sum()) * float((weights * v_i**2).sum()))
        if abs(moment) > _ZERO_TOL * scale:
            return float(index)
    return math.inf


def _build(name: str, rank: int, raw_link: Link, noise_variance: float = 0.0) -> Target:
    """Normalise ``raw_link`` and compute both exponents per direction by Gauss–Hermite quadrature."""
    nodes, weights = _tensor_quadrature(rank)
    raw = raw_link(nodes)
    mean = float((weights * raw).sum())
    std = math.sqrt(max(float((weights * (raw - mean) ** 2).sum()), 0.0))
    if std < _ZERO_TOL:
        raise ValueError(f"Target {name!r} is constant; it cannot be normalised to unit variance.")
    y = (raw - mean) / std
    information, reuse = [], []
    for j in range(rank):
        z_j = nodes[:, j]
        orders = range(1, _MAX_EXPONENT + 1)
        information.append(_first_correlated([hermite(z_j, k) for k in orders], y, weights))
        reuse.append(_first_correlated([y**p for p in orders], z_j, weights))
    return Target(name, rank, tuple(information), tuple(reuse), noise_variance, raw_link, mean, std)


def _hermite_sum_link(orders: Sequence[int]) -> Link:
    return lambda z: sum(hermite_normalized(z[:, 0], k) for k in orders)


def _bounded_link(order: int) -> Link:
    r"""Bounded link with the exponents of ``he_order``: :math:`\sum_m c_m\,\mathrm{trig}(m z)`.

    ``trig`` is ``sin`` for odd orders and ``cos`` for even ones; the coefficients ``c`` span the null space
    of the lower same-parity Hermite moments (even orders are centred afterwards, which removes order 0),
    so the first non-zero Hermite coefficient is at ``order``. Sign: highest frequency positive.
    """
    trig = torch.sin if order % 2 else torch.cos
    lower = [j for j in range(1, order) if j % 2 == order % 2]
    frequencies = list(range(1, len(lower) + 2))
    quadrature = gaussian_quadrature("gauss")
    if lower:
        moments = torch.stack(
            [
                torch.stack([(quadrature.weights * trig(m * quadrature.nodes) * hermite(quadrature.nodes, j)).sum() for m in frequencies])
                for j in lower
            ]
        )  # (len(lower), len(frequencies))
        coefficients = torch.linalg.svd(moments).Vh[-1]
        coefficients = coefficients * torch.sign(coefficients[-1])
    else:
        coefficients = torch.ones(1, dtype=torch.float64)
    coefficients_list = coefficients.tolist()
    return lambda z: sum(c * trig(m * z[:, 0]) for c, m in zip(coefficients_list, frequencies))


def _single_index(name: str) -> tuple[Link, bool]:
    match = _HERMITE_RE.match(name)
    if match:
        order = int(match.group(2))
        return (_bounded_link(order) if match.group(1) else _hermite_sum_link([order])), True
    if _HERMITE_SUM_RE.match(name):
        parts = name.split("+")
        if not any(part.startswith("bounded_") for part in parts):
            return _hermite_sum_link([int(part[2:]) for part in parts]), True
        # each component normalised to E = 0, E^2 = 1 first, like the orthonormal he_k of a plain sum
        links = [_build(part, 1, _single_index(part)[0]).link for part in parts]
        return (lambda z: sum(link(z) for link in links)), True
    return (lambda z: z[:, 0]), False


def make_target(name: str, components: Sequence[str] | None = None) -> Target:
    """Build a normalised built-in target.

    Args:
        name: one of :data:`TARGET_NAMES` or a sum ``heI+heJ+…`` of one direction (orders 1–6; components may be
            bounded, e.g. ``bounded_he2+bounded_he3``, each normalised before summing).
        components: for ``name="additive"`` only: the single-index names of the components, one direction each
            (default ``["he1", "he2", "bounded_he3"]``; at most 4).

    Raises:
        ValueError: for an unknown name (the message lists the known ones) or bad components.

    Example:
        >>> target = make_target("he3")
        >>> target.information_exponents, target.reuse_exponents
        ((3.0,), (3.0,))
    """
    if not isinstance(name, str):
        raise TypeError(f"`target` must be a string name, got {type(name).__name__}.")
    if components is not None and name != "additive":
        raise ValueError(f"`components` applies only to the 'additive' target, got target {name!r}.")
    if name == "noise":
        return Target("noise", 0, (), (), noise_variance=1.0)
    if name == "staircase":
        return _build(name, 2, lambda z: z[:, 0] + z[:, 0] * z[:, 1])
    if name == "additive":
        parts = list(components) if components is not None else ["he1", "he2", "bounded_he3"]
        if not 1 <= len(parts) <= _MAX_ADDITIVE_RANK:
            raise ValueError(f"`components` of an additive target must hold 1 to {_MAX_ADDITIVE_RANK} names, got {parts!r}.")
        links = []
        for part in parts:
            link, known = _single_index(part) if isinstance(part, str) else (None, False)
            if not known:
                raise ValueError(
                    f"Additive `components` must be single-index names like 'he1', 'bounded_he3' or 'he2+he3', got {part!r}."
                )
            single = _build(part, 1, link)
            links.append(single.link)
        return _build(
            name, len(parts), lambda z: sum(link(z[:, [j]]) for j, link in enumerate(links)) / math.sqrt(len(links))
        )
    link, known = _single_index(name)
    if not known:
        raise ValueError(f"Expected `target` to be one of {list(TARGET_NAMES)} or a sum like 'he1+he3', got {name!r}.")
    return _build(name, 1, link)
