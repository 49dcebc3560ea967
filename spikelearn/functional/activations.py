r"""Activations ``σ`` with their derivatives ``σ'`` (SPEC §1, "Hermite conventions").

The default is the shifted :math:`\tanh(z + 1/2)`, whose Hermite coefficients are all non-zero, as
the two-step theory needs (:math:`\mu_{k+1} \ne 0` for every counted order). Odd ``tanh`` has
:math:`\mu_2 = \mu_4 = 0`; ``relu`` has :math:`\mu_3 = \mu_5 = 0`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from spikelearn.functional.hermite import hermite_coefficients

__all__ = ["ACTIVATIONS", "Activation", "activation_coefficients", "get_activation"]

_SHIFT = 0.5
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


class Activation(NamedTuple):
    """An elementwise activation and its derivative.

    Attributes:
        name: registry name, or ``"custom"`` for a user callable.
        function: ``σ``, elementwise.
        derivative: ``σ'``, elementwise.
        smooth: ``False`` for kinked functions (Hermite coefficients then use a dense grid).
    """

    name: str
    function: Callable[[Tensor], Tensor]
    derivative: Callable[[Tensor], Tensor]
    smooth: bool = True


def _tanh_derivative(z: Tensor) -> Tensor:
    return 1.0 - torch.tanh(z) ** 2


def _erf_derivative(z: Tensor) -> Tensor:
    return _TWO_OVER_SQRT_PI * torch.exp(-(z**2))


def _relu_derivative(z: Tensor) -> Tensor:
    return (z > 0).to(z.dtype)


ACTIVATIONS: dict[str, Activation] = {
    "shifted_tanh": Activation("shifted_tanh", lambda z: torch.tanh(z + _SHIFT), lambda z: _tanh_derivative(z + _SHIFT)),
    "tanh": Activation("tanh", torch.tanh, _tanh_derivative),
    "relu": Activation("relu", torch.relu, _relu_derivative, smooth=False),
    "erf": Activation("erf", torch.erf, _erf_derivative),
    "shifted_erf": Activation("shifted_erf", lambda z: torch.erf(z + _SHIFT), lambda z: _erf_derivative(z + _SHIFT)),
}
"""Built-in activations by name."""


def _autograd_derivative(function: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def derivative(z: Tensor) -> Tensor:
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(function(leaf).sum(), leaf)
        return grad

    return derivative


def get_activation(
    spec: str | Callable[[Tensor], Tensor] | Activation,
    derivative: Callable[[Tensor], Tensor] | None = None,
) -> Activation:
    """Resolve an activation by name, or wrap a user callable.

    Args:
        spec: a name from :data:`ACTIVATIONS`, an :class:`Activation`, or an elementwise callable.
        derivative: ``σ'`` for a callable; by default autograd differentiates ``spec``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
        TypeError: for anything that is neither a name nor callable.

    Example:
        >>> act = get_activation("relu")
        >>> act.derivative(torch.tensor([-1.0, 2.0]))
        tensor([0., 1.])
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        if spec not in ACTIVATIONS:
            raise ValueError(f"Expected `activation` to be one of {sorted(ACTIVATIONS)} or a callable, got {spec!r}.")
        return ACTIVATIONS[spec]
    if callable(spec):
        return Activation("custom", spec, derivative or _autograd_derivative(spec), smooth=False)
    raise TypeError(f"`activation` must be a name or a callable, got {type(spec).__name__}.")


def activation_coefficients(activation: str | Activation | Callable[[Tensor], Tensor], max_order: int = 6) -> Tensor:
    r"""Hermite coefficients :math:`\mu_k = E[\sigma(z) He_k(z)]` of an activation, ``k = 0..max_order``.

    Smooth activations use Gauss–Hermite quadrature; kinked ones and user callables a dense grid.

    Example:
        >>> mu = activation_coefficients("relu", 3)
        >>> round(float(mu[1]), 6), abs(round(float(mu[3]), 6))
        (0.5, 0.0)
    """
    act = get_activation(activation)
    return hermite_coefficients(act.function, max_order, method="gauss" if act.smooth else "grid")
