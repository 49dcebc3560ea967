r"""The ridge readout over streams of chunks: normal equations and torchmetrics errors, synced across ranks.

Ba et al.'s protocol fits the second layer ``a`` by ridge regression on the learned features
:math:`\Phi = \sigma(X W_T^\top)/\sqrt N` and reports the mean squared errors on the fit set and on held-out data.
Here neither set is ever held whole:

* the fit accumulates its normal equations ``ΦᵀΦ`` ``(N, N)`` and ``Φᵀy`` ``(N,)`` in float64 over the chunks of the
  fit set (:func:`spikelearn.functional.normal_equations`), sums them over the ranks, and solves once
  (:func:`spikelearn.functional.solve_normal_equations`);
* the errors are torchmetrics metrics (:class:`~torchmetrics.regression.MeanSquaredError`, and
  :class:`MeanSquaredErrorWithStandardError` for the test set) updated chunk by chunk; under DDP each rank updates
  them with its share of the chunks and torchmetrics syncs their states when they are computed.

Memory is ``O(N² + chunk · (N + d))`` whatever the sizes of the sets; time is linear in them. The math lives in
:mod:`spikelearn.functional.model`; this module only strings it together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torchmetrics.regression import MeanSquaredError

from spikelearn.functional import model as F
from spikelearn.functional.activations import Activation

__all__ = ["MeanSquaredErrorWithStandardError", "ReadoutResult", "SquaredErrorMean", "readout_bytes", "streamed_readout"]

Chunks = Callable[[], Iterable[tuple[Tensor, Tensor]]]
"""Returns a fresh iterator over this rank's chunks ``(X (m, d), y (m,))`` of a set, each time it is called."""


class SquaredErrorMean(NamedTuple):
    """A mean squared error over ``count`` rows and its standard error (``nan`` below 2 rows)."""

    mse: Tensor
    standard_error: Tensor
    count: Tensor


class MeanSquaredErrorWithStandardError(MeanSquaredError):
    r"""torchmetrics' mean squared error that also sums ``e⁴``, so that it knows its own standard error.

    The states (``Σ e²``, ``Σ e⁴``, the row count) are sums, reduced over the ranks by torchmetrics;
    :meth:`compute` returns a :class:`SquaredErrorMean` (see
    :func:`~spikelearn.functional.squared_error_standard_error`). States are float64: a test set of 10⁸ rows is
    summed from ~10⁴ chunk sums without losing the digits its standard error keeps.

    Example:
        >>> metric = MeanSquaredErrorWithStandardError()
        >>> metric.update(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))
        >>> metric.update(torch.tensor([0.0, 3.0]), torch.tensor([0.0, 1.0]))
        >>> error = metric.compute()
        >>> float(error.mse), round(float(error.standard_error), 6), int(error.count)
        (2.25, 1.030776, 4)
    """

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("sum_fourth_power", default=torch.zeros(1), dist_reduce_fx="sum")
        self.set_dtype(torch.float64)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a chunk's predictions ``(m,)`` and targets ``(m,)``."""
        super().update(preds, target)
        squares = (preds.reshape(-1) - target.reshape(-1)).to(torch.float64).square()
        self.sum_fourth_power += squares.square().sum()

    def compute(self) -> SquaredErrorMean:  # type: ignore[override]
        """The MSE of every row seen (on every rank), its standard error and the row count."""
        mse = super().compute()
        count = int(self.total)
        se = F.squared_error_standard_error(float(self.sum_squared_error.sum()), float(self.sum_fourth_power.sum()), count)
        return SquaredErrorMean(mse, torch.tensor(se, dtype=torch.float64), self.total.clone())


class ReadoutResult(NamedTuple):
    """What the streamed readout measured: the fitted ``a`` ``(N,)`` (float64) and its errors."""

    a: Tensor
    train_mse: float
    test_mse: float
    test_mse_stderr: float
    fit_rows: int
    test_rows: int


def _no_reduction(tensor: Tensor) -> Tensor:
    return tensor


def streamed_readout(
    W: Tensor,
    activation: Activation,
    ridge: float,
    fit_chunks: Chunks,
    test_chunks: Chunks,
    reduce_sum: Callable[[Tensor], Tensor] = _no_reduction,
) -> ReadoutResult:
    r"""Ba et al.'s readout on a fit set and a test set that arrive in chunks (this rank's share of each).

    .. math:: \hat a = (\Phi^\top\Phi + n\lambda I)^{-1}\Phi^\top y \ \text{(summed over every chunk of every rank)},
              \qquad \mathrm{MSE} = \frac1m \sum_j (\phi(x_j)^\top \hat a - y_j)^2.

    Every rank must call it (the sums and the metrics' syncs are collectives). The fit set is read twice: once
    for the normal equations, once for the fit error of the solved ``a``; the test set once.

    Args:
        W: ``(N, d)`` learned first layer (half precision is read out in float32).
        activation: ``σ``.
        ridge: ``λ >= 0`` (``0``: the minimum-norm least-squares fit).
        fit_chunks: this rank's chunks of the fit set.
        test_chunks: this rank's chunks of the test set.
        reduce_sum: sums a tensor over the ranks in place and returns it (identity for one process), e.g.
            ``lambda t: trainer.strategy.reduce(t, reduce_op="sum")``.

    Example:
        >>> from spikelearn.functional.activations import get_activation
        >>> g = torch.Generator().manual_seed(0)
        >>> W, X = torch.randn(20, 5, generator=g, dtype=torch.float64), torch.randn(400, 5, generator=g, dtype=torch.float64)
        >>> y = X[:, 0]
        >>> result = streamed_readout(W, get_activation("tanh"), 1e-6, lambda: [(X[:100], y[:100]), (X[100:200], y[100:200])],
        ...                           lambda: [(X[200:], y[200:])])
        >>> dense = F.readout_errors(W, X[:200], y[:200], X[200:], y[200:], get_activation("tanh"), ridge=1e-6)
        >>> abs(result.test_mse - dense.test_mse) < 1e-10 * dense.test_mse, result.fit_rows, result.test_rows
        (True, 200, 200)
    """
    work = torch.promote_types(W.dtype, torch.float32)  # bf16/fp16 weights: features in float32 at least
    W = W.detach().to(work)  # (N, d)
    N, device = W.shape[0], W.device

    stats = F.NormalEquations(
        torch.zeros(N, N, dtype=torch.float64, device=device), torch.zeros(N, dtype=torch.float64, device=device), 0
    )
    for X, y in fit_chunks():
        stats = stats.add(F.normal_equations(F.network_features(W, X.to(work), activation), y.to(work)))
    count = reduce_sum(torch.tensor([float(stats.count)], dtype=torch.float64, device=device))
    stats = F.NormalEquations(reduce_sum(stats.gram), reduce_sum(stats.moment), int(count.item()))
    a_hat = F.solve_normal_equations(stats, ridge)  # (N,) float64
    del stats

    train = MeanSquaredError().to(device)
    train.set_dtype(torch.float64)
    for X, y in fit_chunks():
        train.update(_predictions(W, a_hat, X.to(work), activation), y.to(torch.float64))
    test = MeanSquaredErrorWithStandardError().to(device)
    for X, y in test_chunks():
        test.update(_predictions(W, a_hat, X.to(work), activation), y.to(torch.float64))
    train_mse, error = float(train.compute()), test.compute()
    return ReadoutResult(
        a_hat, train_mse, float(error.mse), float(error.standard_error), int(count.item()), int(error.count)
    )


def _predictions(W: Tensor, a_hat: Tensor, X: Tensor, activation: Activation) -> Tensor:
    """``Φ â`` ``(m,)`` in float64 (the features in ``W``'s dtype, the product in float64)."""
    return F.network_features(W, X, activation).to(torch.float64) @ a_hat


def readout_bytes(N: int, d: int, chunk_rows: int, itemsize: int) -> int:
    """Peak bytes of :func:`streamed_readout`: the float64 system and its solve, plus one chunk's working set.

    ``3 N²`` float64 (``ΦᵀΦ``, the regularised copy or eigenvectors, the solver's factor) and, per chunk, its
    inputs ``X`` and labels, the pre-activations and features in the working dtype and a float64 copy of the
    features.

    Example:
        >>> readout_bytes(256, 256, 4096, 4) / 1e6
        22.642688
    """
    system = 3 * 8 * N * N + 8 * 8 * N
    chunk = chunk_rows * ((d + 1 + 2 * N) * itemsize + 8 * (N + 2))
    return system + chunk
