r"""The two-layer network, its closed-form gradient step and the ridge readout (SPEC §1).

Symbols:
    ``N``: width; ``d``: input dimension; ``n``: batch size.
    ``W``: ``(N, d)`` first-layer weights, rows ``w_i``; ``a``: ``(N,)`` second-layer weights (fixed during the
    feature-learning steps).
    ``X``: ``(n, d)`` inputs, rows ``x_j``; ``y``: ``(n,)`` labels.

.. math::

    f(x; W) = N^{-1/2} \sum_i a_i\, \sigma(\langle w_i, x\rangle), \qquad
    L(W) = \frac{1}{2n} \sum_j (y_j - f(x_j; W))^2,

    G(W) = -\nabla_W L = \frac{1}{n} \sum_j r_j\, N^{-1/2} (a \odot \sigma'(W x_j))\, x_j^\top, \qquad
    W_t = W_{t-1} + \eta_t \sqrt{N}\, G(W_{t-1}).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from spikelearn.functional.activations import Activation

__all__ = [
    "INIT_KINDS",
    "W0_ONE_SHOT_ENTRIES",
    "LOSSES",
    "READOUT_KINDS",
    "gradient_step",
    "init_first_layer",
    "init_second_layer",
    "loss",
    "negative_gradient",
    "network_features",
    "network_output",
    "residual",
    "NormalEquations",
    "ReadoutErrors",
    "normal_equations",
    "readout_errors",
    "ridge_readout",
    "solve_normal_equations",
    "squared_error_standard_error",
]

INIT_KINDS = ("gaussian", "sphere")
"""First-layer initialisations: rows iid ``N(0, I/d)``, or uniform on the unit sphere."""
READOUT_KINDS = ("gaussian", "rademacher", "constant")
"""Second-layer initialisations: iid ``N(0, 1/N)``, ``±1/√N``, or ``1/√N``."""
LOSSES = ("mse", "correlation")
"""Losses: squared error, or correlation loss ``-(1/n) Σ_j y_j f(x_j)`` (residual ``r_j ≡ y_j``)."""


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"Expected `{name}` to be one of {list(allowed)}, got {value!r}.")


def init_first_layer(
    N: int, d: int, generator: torch.Generator, kind: str = "gaussian", dtype: torch.dtype = torch.float32
) -> Tensor:
    r"""Initial first layer ``W0``, shape ``(N, d)``: iid :math:`N(0, 1/d)` or rows uniform on the unit sphere.

    Example:
        >>> W0 = init_first_layer(3, 4, torch.Generator().manual_seed(0), kind="sphere")
        >>> torch.allclose(W0.norm(dim=1), torch.ones(3))
        True
    """
    _check_choice("init", kind, INIT_KINDS)
    if N * d <= W0_ONE_SHOT_ENTRIES or dtype == torch.float64:
        return _scaled_rows(torch.randn(N, d, generator=generator, dtype=torch.float64), kind, d).to(dtype)
    # large W0: drawn in float64 row blocks, scaled, and written into the run's dtype, so the float64 copy never
    # exceeds one block; blocks of a multiple of 16 entries keep torch's CPU normal stream, and so the values,
    # identical to the one-shot draw
    W0 = torch.empty(N, d, dtype=dtype)
    unit = 16 // math.gcd(d, 16)
    rows = max(unit, (W0_ONE_SHOT_ENTRIES // d) // unit * unit)
    for start in range(0, N, rows):
        block = torch.randn(min(rows, N - start), d, generator=generator, dtype=torch.float64)
        W0[start : start + rows] = _scaled_rows(block, kind, d)
    return W0


W0_ONE_SHOT_ENTRIES = 1 << 22
"""Up to this many entries (32 MiB in float64) ``W0`` is drawn in one piece; larger ones in row blocks of this size."""


def _scaled_rows(X: Tensor, kind: str, d: int) -> Tensor:
    # rows of iid N(0, 1) -> N(0, 1/d) entries, or unit rows for the sphere init (float64)
    return X / (X.norm(dim=1, keepdim=True) if kind == "sphere" else math.sqrt(d))


def init_second_layer(N: int, generator: torch.Generator, kind: str = "gaussian", dtype: torch.dtype = torch.float32) -> Tensor:
    r"""Second layer ``a``, shape ``(N,)``: iid :math:`N(0, 1/N)`, Rademacher :math:`\pm 1/\sqrt N`, or :math:`1/\sqrt N`.

    Example:
        >>> init_second_layer(4, torch.Generator().manual_seed(0), kind="constant")
        tensor([0.5000, 0.5000, 0.5000, 0.5000])
    """
    _check_choice("readout_init", kind, READOUT_KINDS)
    if kind == "gaussian":
        a = torch.randn(N, generator=generator, dtype=torch.float64)
    elif kind == "rademacher":
        a = torch.randint(0, 2, (N,), generator=generator).to(torch.float64) * 2.0 - 1.0
    else:
        a = torch.ones(N, dtype=torch.float64)
    return (a / math.sqrt(N)).to(dtype)


def network_features(W: Tensor, X: Tensor, activation: Activation) -> Tensor:
    r"""Learned features :math:`\sigma(X W^\top)/\sqrt N`, shape ``(n, N)``."""
    return _features(X @ W.T, activation)


def _features(preactivations: Tensor, activation: Activation) -> Tensor:
    return activation.function(preactivations) / math.sqrt(preactivations.shape[1])


def _residual(preactivations: Tensor, a: Tensor, y: Tensor, activation: Activation, loss_kind: str) -> Tensor:
    _check_choice("loss", loss_kind, LOSSES)
    return y if loss_kind == "correlation" else y - _features(preactivations, activation) @ a


def network_output(W: Tensor, a: Tensor, X: Tensor, activation: Activation) -> Tensor:
    r"""Network output :math:`f(x_j; W) = N^{-1/2} \sum_i a_i \sigma(\langle w_i, x_j\rangle)`, shape ``(n,)``.

    Example:
        >>> from spikelearn.functional.activations import get_activation
        >>> W, a, X = torch.ones(4, 2), torch.ones(4), torch.zeros(3, 2)
        >>> network_output(W, a, X, get_activation("relu"))
        tensor([0., 0., 0.])
    """
    return network_features(W, X, activation) @ a


def residual(W: Tensor, a: Tensor, X: Tensor, y: Tensor, activation: Activation, loss_kind: str = "mse") -> Tensor:
    r"""Residual ``r_j``: :math:`y_j - f(x_j; W)` for ``"mse"``, :math:`y_j` for ``"correlation"``; shape ``(n,)``."""
    return _residual(X @ W.T, a, y, activation, loss_kind)


def loss(W: Tensor, a: Tensor, X: Tensor, y: Tensor, activation: Activation, loss_kind: str = "mse") -> Tensor:
    r"""Batch loss: :math:`\frac{1}{2n}\sum_j (y_j - f(x_j))^2` (``"mse"``) or :math:`-\frac1n \sum_j y_j f(x_j)`.

    Example:
        >>> from spikelearn.functional.activations import get_activation
        >>> W, a, X, y = torch.zeros(4, 2), torch.ones(4), torch.ones(3, 2), torch.ones(3)
        >>> float(loss(W, a, X, y, get_activation("relu")))
        0.5
    """
    _check_choice("loss", loss_kind, LOSSES)
    output = network_output(W, a, X, activation)
    if loss_kind == "correlation":
        return -(y * output).mean()
    return 0.5 * ((y - output) ** 2).mean()


def negative_gradient(
    W: Tensor, a: Tensor, X: Tensor, y: Tensor, activation: Activation, loss_kind: str = "mse"
) -> Tensor:
    r"""Closed-form negative gradient :math:`G(W) = -\nabla_W L`, shape ``(N, d)``.

    .. math:: G(W) = \frac{1}{n} \sum_j r_j\, N^{-1/2} (a \odot \sigma'(W x_j))\, x_j^\top
              = \frac{1}{n\sqrt N} \big(\sigma'(X W^\top) \odot r a^\top\big)^\top X.

    Args:
        W: ``(N, d)``; a: ``(N,)``; X: ``(n, d)``; y: ``(n,)``.
        activation: supplies ``σ'``.
        loss_kind: ``"mse"`` or ``"correlation"`` (residual ``r_j ≡ y_j``).
    """
    n, N = X.shape[0], W.shape[0]
    preactivations = X @ W.T  # (n, N), shared by the residual and σ'
    r = _residual(preactivations, a, y, activation, loss_kind)  # (n,)
    weighted = activation.derivative(preactivations) * (r[:, None] * a[None, :])  # (n, N)
    return weighted.T @ X / (n * math.sqrt(N))


def gradient_step(W: Tensor, G: Tensor, eta: float) -> Tensor:
    r"""One feature-learning step :math:`W_t = W_{t-1} + \eta_t \sqrt N\, G(W_{t-1})`.

    Example:
        >>> gradient_step(torch.zeros(4, 1), torch.ones(4, 1), 0.5)
        tensor([[1.],
                [1.],
                [1.],
                [1.]])
    """
    return W + eta * math.sqrt(W.shape[0]) * G


def ridge_readout(features: Tensor, y: Tensor, ridge: float) -> Tensor:
    r"""Ridge-regression second layer on fixed features (Ba et al.'s readout protocol).

    .. math:: \hat a = \arg\min_a \frac1n \|y - \Phi a\|^2 + \lambda \|a\|^2 = (\Phi^\top\Phi + n\lambda I)^{-1}\Phi^\top y

    Args:
        features: ``Φ = σ(X W_Tᵀ)/√N``, shape ``(n, N)``.
        y: ``(n,)`` labels.
        ridge: ``λ >= 0``.

    Returns:
        ``(N,)`` fitted second layer.

    Example:
        >>> Phi = torch.eye(3, dtype=torch.float64)
        >>> y = torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64)
        >>> torch.allclose(ridge_readout(Phi, y, ridge=0.0), y)
        True
    """
    if not ridge >= 0.0:
        raise ValueError(f"`ridge` must be >= 0, got {ridge!r}.")
    n, N = features.shape
    gram = features.T @ features + n * ridge * torch.eye(N, dtype=features.dtype, device=features.device)
    return torch.linalg.solve(gram, features.T @ y) if ridge > 0 else torch.linalg.lstsq(features, y[:, None]).solution[:, 0]


class ReadoutErrors(NamedTuple):
    """Mean squared errors of a ridge readout on its fitting set and on held-out data."""

    train_mse: float
    test_mse: float


def readout_errors(
    W: Tensor, X_fit: Tensor, y_fit: Tensor, X_test: Tensor, y_test: Tensor, activation: Activation, ridge: float
) -> ReadoutErrors:
    r"""Ba et al.'s readout protocol: fit ``a`` on the learned features, report train and test MSE.

    .. math:: \hat a = \mathrm{ridge}(\Phi_{fit}, y_{fit}, \lambda), \quad \Phi = \sigma(X W^\top)/\sqrt N,
              \quad \mathrm{MSE} = \frac1m \|\Phi \hat a - y\|^2.

    Args:
        W: ``(N, d)`` learned first layer; X_fit: ``(n_fit, d)``; y_fit: ``(n_fit,)``; X_test: ``(m, d)``;
        y_test: ``(m,)``.
        activation: ``σ``.
        ridge: ``λ >= 0`` (see :func:`ridge_readout`).

    Half-precision inputs (``bfloat16``, ``float16``) are read out in float32, which linear solvers need.

    Example:
        >>> from spikelearn.functional.activations import get_activation
        >>> g = torch.Generator().manual_seed(0)
        >>> W, X = torch.randn(50, 5, generator=g, dtype=torch.float64), torch.randn(200, 5, generator=g, dtype=torch.float64)
        >>> y = X[:, 0]
        >>> errors = readout_errors(W, X[:100], y[:100], X[100:], y[100:], get_activation("tanh"), ridge=1e-6)
        >>> errors.train_mse < errors.test_mse < 1.0  # 1.0: the zero predictor's MSE, E y^2
        True
    """
    work = torch.promote_types(W.dtype, torch.float32)  # bf16/fp16 weights: the solve needs float32 at least
    W, X_fit, y_fit, X_test, y_test = (t.to(work) for t in (W, X_fit, y_fit, X_test, y_test))
    features_fit = network_features(W, X_fit, activation)  # (n_fit, N)
    a_hat = ridge_readout(features_fit, y_fit, ridge)  # (N,)
    train_mse = float(((features_fit @ a_hat - y_fit) ** 2).mean())
    test_mse = float(((network_features(W, X_test, activation) @ a_hat - y_test) ** 2).mean())
    return ReadoutErrors(train_mse, test_mse)


class NormalEquations(NamedTuple):
    r"""The sufficient statistics of a least-squares fit on ``n`` rows: ``ΦᵀΦ`` ``(N, N)``, ``Φᵀy`` ``(N,)``, ``n``.

    Sums over disjoint chunks of rows add up field by field (:meth:`add`), so a fit set of any size is reduced to
    ``N² + N + 1`` numbers, chunk by chunk or rank by rank.
    """

    gram: Tensor  # (N, N) float64
    moment: Tensor  # (N,) float64
    count: int

    def add(self, other: NormalEquations) -> NormalEquations:
        """The statistics of both sets of rows together."""
        return NormalEquations(self.gram + other.gram, self.moment + other.moment, self.count + other.count)


def normal_equations(features: Tensor, y: Tensor) -> NormalEquations:
    r"""``ΦᵀΦ`` and ``Φᵀy`` of one chunk of rows, accumulated in float64 whatever the features' dtype.

    Args:
        features: ``Φ``, shape ``(n, N)``.
        y: ``(n,)`` labels.

    Example:
        >>> Phi, y = torch.tensor([[1.0, 0.0], [1.0, 2.0]]), torch.tensor([1.0, 3.0])
        >>> stats = normal_equations(Phi, y)
        >>> stats.gram.tolist(), stats.moment.tolist(), stats.count
        ([[2.0, 2.0], [2.0, 4.0]], [4.0, 6.0], 2)
    """
    Phi = features.to(torch.float64)  # (n, N)
    return NormalEquations(Phi.T @ Phi, Phi.T @ y.to(torch.float64), int(features.shape[0]))


def solve_normal_equations(stats: NormalEquations, ridge: float, rcond: float | None = None) -> Tensor:
    r"""The ridge readout from its normal equations: :math:`\hat a = (\Phi^\top\Phi + n\lambda I)^{-1}\Phi^\top y`.

    This is :func:`ridge_readout` for a fit set that was never held whole. With ``λ = 0`` the system may be singular
    (fewer rows than features): the minimum-norm solution is returned, dropping the eigenvalues of ``ΦᵀΦ`` below
    ``rcond`` times the largest, as a least-squares solver drops the singular values of ``Φ`` below ``√rcond``.

    Args:
        stats: :class:`NormalEquations` of the fit set (``count >= 1``).
        ridge: ``λ >= 0``.
        rcond: relative eigenvalue cut for ``λ = 0``; default ``max(N ε₆₄, (N ε)²)`` with ``ε`` the machine epsilon
            of the features' dtype (float32 unless given): what the dense float32 ``lstsq`` of :func:`ridge_readout`
            resolves, and no finer than the float64 sums carry.

    Returns:
        ``(N,)`` float64 second layer.

    Raises:
        ValueError: if ``ridge`` is negative or not finite, or ``stats.count < 1``.

    Example:
        >>> Phi, y = torch.eye(3, dtype=torch.float64), torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64)
        >>> solve_normal_equations(normal_equations(Phi, y), ridge=0.0).tolist()
        [3.0, 0.0, 0.0]
    """
    if not (math.isfinite(ridge) and ridge >= 0.0):
        raise ValueError(f"`ridge` must be a finite number >= 0, got {ridge!r}.")
    if stats.count < 1:
        raise ValueError(f"The normal equations need at least one row, got count = {stats.count!r}.")
    gram, moment = stats.gram, stats.moment
    N = gram.shape[0]
    if ridge > 0:
        system = gram + (stats.count * ridge) * torch.eye(N, dtype=gram.dtype, device=gram.device)
        return torch.linalg.solve(system, moment)
    if rcond is None:
        rcond = max(N * torch.finfo(torch.float64).eps, (N * torch.finfo(torch.float32).eps) ** 2)
    values, vectors = torch.linalg.eigh(gram)  # ascending, (N,), (N, N)
    keep = values > rcond * values[-1].clamp_min(0.0)
    inverse = torch.where(keep, 1.0 / torch.where(keep, values, 1.0), 0.0)
    return vectors @ (inverse * (vectors.T @ moment))


def squared_error_standard_error(sum_squares: float, sum_fourth_powers: float, count: int) -> float:
    r"""Standard error of a mean squared error over ``m`` independent rows, from the sums of ``e_j²`` and ``e_j⁴``.

    .. math:: \mathrm{se} = \sqrt{\frac{1}{m}\,\frac{\sum_j e_j^4 - m\,\overline{e^2}^{\,2}}{m - 1}},
              \qquad \overline{e^2} = \frac1m \sum_j e_j^2,

    the sample standard deviation of the squared errors over ``√m``: the test MSE is known to about this many
    units, so its digits past the first one or two of ``se`` carry no information. ``nan`` when ``m < 2``.

    Example:
        >>> e = torch.tensor([1.0, -1.0, 2.0, 0.0], dtype=torch.float64)
        >>> round(squared_error_standard_error(float((e**2).sum()), float((e**4).sum()), 4), 6)
        0.866025
        >>> round(float((e**2).std() / 2), 6)
        0.866025
    """
    if count < 2:
        return math.nan
    mean = sum_squares / count
    variance = max(sum_fourth_powers - count * mean * mean, 0.0) / (count - 1)
    return math.sqrt(variance / count)
