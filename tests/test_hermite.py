"""Hermite polynomials and activation coefficients against analytic and independently computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from spikelearn.functional import ACTIVATIONS, activation_coefficients, get_activation, hermite, hermite_normalized


def test_hermite_orthogonality_under_gauss_quadrature():
    x, w = np.polynomial.hermite_e.hermegauss(20)  # exact to degree 39
    x, w = torch.from_numpy(x), torch.from_numpy(w / w.sum())
    H = torch.stack([hermite(x, k) for k in range(8)])
    expected = torch.diag(torch.tensor([math.factorial(k) for k in range(8)], dtype=H.dtype))
    torch.testing.assert_close((H * w) @ H.T, expected, rtol=1e-12, atol=1e-9)


def test_normalized_hermite_is_orthonormal():
    x, w = np.polynomial.hermite_e.hermegauss(20)
    x, w = torch.from_numpy(x), torch.from_numpy(w / w.sum())
    H = torch.stack([hermite_normalized(x, k) for k in range(8)])
    torch.testing.assert_close((H * w) @ H.T, torch.eye(8, dtype=H.dtype), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", range(7))
def test_hermite_matches_numpy(k):
    z = torch.linspace(-3, 3, 13, dtype=torch.float64)
    coefficients = np.zeros(k + 1)
    coefficients[k] = 1.0
    expected = torch.from_numpy(np.polynomial.hermite_e.hermeval(z.numpy(), coefficients))
    torch.testing.assert_close(hermite(z, k), expected)


def test_hermite_rejects_negative_order():
    with pytest.raises(ValueError, match="`k` must be >= 0"):
        hermite(torch.zeros(1), -1)


SQRT_2PI = math.sqrt(2 * math.pi)
# Closed forms: relu  mu_k = E[relu^(k)]: 1/sqrt(2pi), 1/2, phi(0), 0 (He_3 term of the kink: z^2-1 odd moments);
# erf mu_1 = E[2/sqrt(pi) e^{-z^2}] = 2/sqrt(3 pi), mu_3 = E[erf'''] = -4/(3 sqrt(3 pi)); odd functions have even mu = 0.
ANALYTIC = {
    ("relu", 0): 1 / SQRT_2PI,
    ("relu", 1): 0.5,
    ("relu", 2): 1 / SQRT_2PI,
    ("relu", 3): 0.0,
    ("relu", 5): 0.0,
    ("tanh", 0): 0.0,
    ("tanh", 2): 0.0,
    ("tanh", 4): 0.0,
    ("erf", 1): 2 / math.sqrt(3 * math.pi),
    ("erf", 2): 0.0,
    ("erf", 3): -4 / (3 * math.sqrt(3 * math.pi)),
}


@pytest.mark.parametrize(("name", "k"), sorted(ANALYTIC))
def test_activation_coefficient_closed_form(name, k):
    # Gauss-Hermite: ~1e-14 for smooth sigma; dense grid (relu): trapezoid error O(h^2) = O(1e-8), so 1e-7
    tolerance = 1e-10 if get_activation(name).smooth else 1e-7
    assert abs(float(activation_coefficients(name, 5)[k]) - ANALYTIC[(name, k)]) < tolerance


def _quad_coefficient(function, k: int) -> float:
    coefficients = np.zeros(k + 1)
    coefficients[k] = 1.0
    integrand = lambda z: function(z) * np.polynomial.hermite_e.hermeval(z, coefficients) * np.exp(-z * z / 2) / SQRT_2PI
    value, _ = integrate.quad(integrand, -40, 40, points=[0.0, -0.5], limit=400, epsabs=1e-13, epsrel=1e-12)
    return value


NUMPY_ACTIVATIONS = {
    "shifted_tanh": lambda z: np.tanh(z + 0.5),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "erf": lambda z: np.vectorize(math.erf)(z),
    "shifted_erf": lambda z: np.vectorize(math.erf)(z + 0.5),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("k", range(6))
def test_activation_coefficients_match_adaptive_quadrature(name, k):
    # scipy's adaptive quad is an independent integrator; agreement to 1e-7 covers the relu grid's O(h^2) error
    expected = _quad_coefficient(NUMPY_ACTIVATIONS[name], k)
    assert abs(float(activation_coefficients(name, 5)[k]) - expected) < 1e-7


@pytest.mark.parametrize("name", ["shifted_tanh", "shifted_erf"])
def test_shifted_activations_have_no_hermite_gap(name):
    mu = activation_coefficients(name, 6)
    assert bool((mu[1:].abs() > 1e-3).all())


def test_custom_callable_derivative_is_autograd():
    act = get_activation(lambda z: torch.sin(z) * z)
    z = torch.linspace(-2, 2, 9, dtype=torch.float64)
    torch.testing.assert_close(act.derivative(z), torch.cos(z) * z + torch.sin(z))


def test_custom_callable_coefficients_match_named():
    custom = activation_coefficients(lambda z: torch.tanh(z + 0.5), 4)
    torch.testing.assert_close(custom, activation_coefficients("shifted_tanh", 4), rtol=0, atol=1e-7)


def test_unknown_activation_lists_known_names():
    with pytest.raises(ValueError, match="shifted_tanh"):
        get_activation("sigmoid")


def test_activation_must_be_name_or_callable():
    with pytest.raises(TypeError, match="`activation`"):
        get_activation(3)
