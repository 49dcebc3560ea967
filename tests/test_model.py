"""The network, the closed-form gradient G(W) and the ridge readout (SPEC §1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikelearn.functional import (
    ACTIVATIONS,
    LOSSES,
    get_activation,
    gradient_step,
    init_first_layer,
    init_second_layer,
    loss,
    negative_gradient,
    network_output,
    ridge_readout,
)


def _problem(N=40, d=30, n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = init_first_layer(N, d, g, dtype=torch.float64)
    a = init_second_layer(N, g, dtype=torch.float64)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    return W, a, X, y


@pytest.mark.parametrize("loss_kind", LOSSES)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("seed", [0, 1])
def test_negative_gradient_equals_autograd(name, loss_kind, seed):
    W, a, X, y = _problem(seed=seed)
    activation = get_activation(name)
    leaf = W.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(leaf, a, X, y, activation, loss_kind), leaf)
    G = negative_gradient(W, a, X, y, activation, loss_kind)
    # float64 sums of ~n*N terms: relative error ~1e-15; the issue asks for <= 1e-10
    assert float((G + grad).norm() / grad.norm()) <= 1e-10


def test_negative_gradient_of_custom_activation_equals_autograd():
    W, a, X, y = _problem()
    activation = get_activation(lambda z: torch.sin(z) + 0.1 * z**2)
    leaf = W.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(leaf, a, X, y, activation), leaf)
    assert float((negative_gradient(W, a, X, y, activation) + grad).norm() / grad.norm()) <= 1e-10


def test_network_output_formula():
    W, a, X, _ = _problem()
    expected = torch.stack([sum(a[i] * torch.tanh(W[i] @ x + 0.5) for i in range(W.shape[0])) for x in X]) / math.sqrt(W.shape[0])
    torch.testing.assert_close(network_output(W, a, X, get_activation("shifted_tanh")), expected)


def test_gradient_step_formula():
    W, a, X, y = _problem()
    G = negative_gradient(W, a, X, y, get_activation("relu"))
    torch.testing.assert_close(gradient_step(W, G, 0.3), W + 0.3 * math.sqrt(W.shape[0]) * G)


@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_init_has_variance_one_over_d(seed):
    N, d = 400, 300
    W0 = init_first_layer(N, d, torch.Generator().manual_seed(seed), dtype=torch.float64)
    # N*d = 1.2e5 entries: the sample variance has relative standard error sqrt(2/(N d)) ~ 0.4 %, so 2 %
    assert abs(float(W0.var()) * d - 1.0) < 0.02


def test_sphere_init_rows_are_unit():
    W0 = init_first_layer(20, 7, torch.Generator().manual_seed(0), kind="sphere", dtype=torch.float64)
    torch.testing.assert_close(W0.norm(dim=1), torch.ones(20, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["gaussian", "rademacher", "constant"])
def test_second_layer_has_norm_about_one(kind):
    a = init_second_layer(2000, torch.Generator().manual_seed(0), kind=kind, dtype=torch.float64)
    # ||a||^2 = (1/N) sum of N unit-variance squares: exactly 1 for +-1/sqrt N, 1 +- 3*sqrt(2/N) for Gaussian
    assert abs(float(a.norm()) ** 2 - 1.0) < 3 * math.sqrt(2 / 2000)


def test_rademacher_values():
    a = init_second_layer(64, torch.Generator().manual_seed(0), kind="rademacher", dtype=torch.float64)
    assert set((a * 8).tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize(("field", "call"), [
    ("init", lambda: init_first_layer(2, 2, torch.Generator(), kind="uniform")),
    ("readout_init", lambda: init_second_layer(2, torch.Generator(), kind="ones")),
    ("loss", lambda: loss(*_problem(), get_activation("relu"), "hinge")),
])
def test_unknown_choices_name_the_field(field, call):
    with pytest.raises(ValueError, match=f"`{field}`"):
        call()


@pytest.mark.parametrize("ridge", [0.0, 1e-3, 1.0])
def test_ridge_readout_matches_numpy(ridge):
    g = torch.Generator().manual_seed(0)
    Phi = torch.randn(80, 30, generator=g, dtype=torch.float64)
    y = torch.randn(80, generator=g, dtype=torch.float64)
    P, t = Phi.numpy(), y.numpy()
    expected = np.linalg.solve(P.T @ P + 80 * ridge * np.eye(30), P.T @ t)
    torch.testing.assert_close(ridge_readout(Phi, y, ridge), torch.from_numpy(expected))


def test_ridge_must_be_non_negative():
    with pytest.raises(ValueError, match="`ridge`"):
        ridge_readout(torch.eye(2), torch.ones(2), -1.0)


def test_readout_errors_match_a_numpy_ridge_fit():
    from spikelearn.functional import readout_errors

    W, _, X, _ = _problem(N=40, d=30, n=120, seed=3)
    y = torch.sin(X[:, 0])
    activation = get_activation("erf")
    errors = readout_errors(W, X[:80], y[:80], X[80:], y[80:], activation, ridge=1e-2)
    Phi = np.vectorize(math.erf)((X @ W.T).numpy()) / math.sqrt(40)
    a_hat = np.linalg.solve(Phi[:80].T @ Phi[:80] + 80 * 1e-2 * np.eye(40), Phi[:80].T @ y[:80].numpy())
    assert errors.train_mse == pytest.approx(float(np.mean((Phi[:80] @ a_hat - y[:80].numpy()) ** 2)), rel=1e-10)
    assert errors.test_mse == pytest.approx(float(np.mean((Phi[80:] @ a_hat - y[80:].numpy()) ** 2)), rel=1e-10)



@pytest.mark.parametrize("ridge", [0.0, 1e-2])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_readout_of_half_precision_weights_is_the_float32_readout_of_their_values(ridge, dtype):
    """bf16-true / 16-true runs: the solve runs in float32 on the same (rounded) numbers, so it equals the float32
    readout of the rounded inputs to float32 rounding (rel 1e-5: LAPACK's blocking may differ with the inputs' memory
    layout, ~1e-7 relative times the conditioning of a 80 x 40 least-squares problem; measured 2e-7)."""
    from spikelearn.functional import readout_errors

    W, _, X, _ = _problem(N=40, d=30, n=120, seed=3)
    W, X = W.to(dtype), X.to(dtype)
    y = torch.sin(X[:, 0].float()).to(dtype)
    activation = get_activation("erf")
    half = readout_errors(W, X[:80], y[:80], X[80:], y[80:], activation, ridge=ridge)
    full = readout_errors(W.float(), X[:80].float(), y[:80].float(), X[80:].float(), y[80:].float(), activation, ridge)
    assert half.train_mse == pytest.approx(full.train_mse, rel=1e-5)
    assert half.test_mse == pytest.approx(full.test_mse, rel=1e-5)

@pytest.mark.parametrize("shape", [(2048, 2048), (2100, 1030), (4099, 1025)])
@pytest.mark.parametrize("kind", ["gaussian", "sphere"])
def test_large_init_is_drawn_in_blocks_with_the_one_shot_values(shape, kind):
    # issue 11 row 8: a large W0 is written into float32 from float64 row blocks (no full float64 copy), and its
    # values are bit-identical to drawing it in one float64 piece, so runs keep their numbers
    N, d = shape
    g = torch.Generator().manual_seed(3)
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    expected = (X / (X.norm(dim=1, keepdim=True) if kind == "sphere" else math.sqrt(d))).to(torch.float32)
    W0 = init_first_layer(N, d, torch.Generator().manual_seed(3), kind)
    assert W0.dtype == torch.float32 and torch.equal(W0, expected)
