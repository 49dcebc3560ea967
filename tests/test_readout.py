"""The streamed ridge readout (issue 21): normal equations and torchmetrics errors over chunks equal the dense
evaluation of the same rows, no chunk exceeds ``data.test_batch_size``, the test MSE knows its standard error.

Tolerances: in float64 the streamed and the dense readout differ only by summation order and by solving the normal
equations instead of the dense system (an error ~κ(Φ)² ε₆₄, κ < 1e2 here), so ``1e-9`` relative. In float32 the dense
readout solves a float32 system while the stream sums it in float64: measured 7.5e-7 relative (train MSE) on the
``many_steps`` config after 50 steps, ``2e-5`` below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikelearn.data import GaussianDataModule
from spikelearn.functional import model as F
from spikelearn.functional.activations import get_activation
from spikelearn.module import TwoLayerModule
from spikelearn.readout import MeanSquaredErrorWithStandardError, streamed_readout

N, D = 24, 16
F64 = torch.float64
ACTIVATION = get_activation("shifted_tanh")


def _data(**kwargs) -> GaussianDataModule:
    return GaussianDataModule(**{"input_dim": D, "batch_size": 32, "seed": 1, "noise_std": 0.1, "test_size": 1000,
                                 "readout_size": 100, "test_batch_size": 64, **kwargs})


def _W(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    W = F.init_first_layer(N, D, g, dtype=F64)  # (N, d)
    beta = torch.zeros(D, dtype=F64)
    beta[0] = 1.0
    return W + 0.5 * torch.randn(N, 1, generator=g, dtype=F64) * beta  # a rank-one "learned" direction


def _streamed(W, data, ridge, dtype=F64):
    return streamed_readout(W, ACTIVATION, ridge, lambda: data.chunks("readout", dtype=dtype),
                            lambda: data.chunks("test", dtype=dtype))


@pytest.mark.parametrize("ridge", [0.0, 1e-3])
@pytest.mark.parametrize("readout_size", [0, 100])
def test_streamed_readout_equals_the_dense_one_on_the_same_rows(ridge, readout_size):
    data = _data(readout_size=readout_size)
    assert data.chunk_count("test") == 16 and data.chunk_count("readout") == 1 + (readout_size > 64)
    W = _W()
    dense = F.readout_errors(W, *data.readout_set(dtype=F64), *data.test_set(dtype=F64), ACTIVATION, ridge)
    streamed = _streamed(W, data, ridge)
    assert streamed.train_mse == pytest.approx(dense.train_mse, rel=1e-9)
    assert streamed.test_mse == pytest.approx(dense.test_mse, rel=1e-9)
    assert (streamed.fit_rows, streamed.test_rows) == (readout_size or 32, 1000)


def test_normal_equations_of_chunks_add_up_to_those_of_the_whole():
    g = torch.Generator().manual_seed(1)
    Phi, y = torch.randn(50, 7, generator=g, dtype=F64), torch.randn(50, generator=g, dtype=F64)
    parts = F.normal_equations(Phi[:20], y[:20]).add(F.normal_equations(Phi[20:], y[20:]))
    whole = F.normal_equations(Phi, y)
    torch.testing.assert_close(parts.gram, whole.gram)
    torch.testing.assert_close(parts.moment, whole.moment)
    assert parts.count == whole.count == 50


def test_unregularised_solve_of_a_singular_system_is_the_minimum_norm_fit():
    g = torch.Generator().manual_seed(2)
    Phi, y = torch.randn(10, 20, generator=g, dtype=F64), torch.randn(10, generator=g, dtype=F64)  # 10 rows < 20
    a_hat = F.solve_normal_equations(F.normal_equations(Phi, y), ridge=0.0)
    torch.testing.assert_close(a_hat, torch.linalg.pinv(Phi) @ y, rtol=1e-8, atol=1e-10)


def test_module_readout_keeps_the_values_of_the_dense_readout():
    """Today's configs (sets of at most one chunk, float32): the logged numbers are the dense ones to rounding."""
    module = TwoLayerModule(width=64, input_dim=64, readout=True, readout_ridge=1e-3)
    data = GaussianDataModule(input_dim=64, batch_size=128, test_size=2048, readout_size=2048)
    assert data.chunk_count("test") == data.chunk_count("readout") == 1
    dense = F.readout_errors(module.W.detach(), *data.readout_set(), *data.test_set(), module.activation, 1e-3)
    logged = module.fit_readout(data)
    assert logged["readout/train_mse"] == pytest.approx(dense.train_mse, rel=2e-5)
    assert logged["readout/test_mse"] == pytest.approx(dense.test_mse, rel=2e-5)


@pytest.mark.parametrize("purpose", ["test", "readout"])
def test_a_set_of_one_chunk_is_drawn_as_before_chunking(purpose):
    data = _data(test_size=64, readout_size=50)
    X, y = data.test_set() if purpose == "test" else data.readout_set()
    X_before, y_before = data.sample(64 if purpose == "test" else 50, purpose, 0)
    assert torch.equal(X, X_before) and torch.equal(y, y_before)


def test_no_draw_of_the_readout_exceeds_test_batch_size(monkeypatch):
    data = _data(test_size=5000, readout_size=300, test_batch_size=256)
    sizes: dict[str, list[int]] = {"test": [], "readout": []}
    sample = GaussianDataModule.sample

    def recording(self, size, purpose, draw, *args, **kwargs):
        sizes[purpose].append(size)
        return sample(self, size, purpose, draw, *args, **kwargs)

    monkeypatch.setattr(GaussianDataModule, "sample", recording)
    result = _streamed(_W(), data, 1e-3)
    assert max(sizes["test"] + sizes["readout"]) <= 256
    assert sum(sizes["test"]) == 5000 and result.test_rows == 5000
    assert sum(sizes["readout"]) == 2 * 300  # read twice: the normal equations, then the fit error


def test_chunks_are_keyed_by_index_and_shared_out_by_rank():
    data = _data(test_size=700, test_batch_size=100)
    whole = list(data.chunks("test"))
    assert [X.shape[0] for X, _ in whole] == [100] * 7
    for world_size in (2, 3):
        shares = [list(data.chunks("test", rank, world_size)) for rank in range(world_size)]
        by_index = {k: chunk for rank, share in enumerate(shares) for k, chunk in zip(range(rank, 7, world_size), share)}
        assert sorted(by_index) == list(range(7))
        assert all(torch.equal(by_index[k][0], whole[k][0]) and torch.equal(by_index[k][1], whole[k][1]) for k in range(7))
    X, y = data.chunk("test", 3)
    assert torch.equal(X, whole[3][0]) and torch.equal(y, whole[3][1])


def test_test_mse_standard_error_is_the_spread_of_the_squared_errors_over_root_m():
    g = torch.Generator().manual_seed(3)
    preds, target = torch.randn(1000, generator=g, dtype=F64), torch.randn(1000, generator=g)
    metric = MeanSquaredErrorWithStandardError()
    for lo in range(0, 1000, 300):
        metric.update(preds[lo:lo + 300], target[lo:lo + 300])
    error = metric.compute()
    squares = (preds - target.double()).numpy() ** 2
    assert float(error.mse) == pytest.approx(squares.mean(), rel=1e-12)
    assert float(error.standard_error) == pytest.approx(squares.std(ddof=1) / math.sqrt(1000), rel=1e-10)
    assert int(error.count) == 1000


def test_standard_error_of_one_row_is_nan():
    assert math.isnan(F.squared_error_standard_error(1.0, 1.0, 1))


def test_standard_error_falls_like_one_over_root_test_size():
    W, small, large = _W(), _data(test_size=500), _data(test_size=8000)
    se_small, se_large = _streamed(W, small, 1e-3).test_mse_stderr, _streamed(W, large, 1e-3).test_mse_stderr
    # 16x the rows: 1/4 of the error, up to the sampling noise of the spread itself (~10 % at 500 rows)
    assert 0.18 < se_large / se_small < 0.33


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "64"])
def test_bad_test_batch_size_names_the_field(value):
    with pytest.raises(ValueError, match="`data.test_batch_size` must be an integer >= 1"):
        _data(test_batch_size=value)


@pytest.mark.parametrize("k", [-1, 16, 1.0])
def test_a_chunk_that_does_not_exist_is_refused(k):
    with pytest.raises(ValueError, match="has chunks 0 to 15"):
        _data().chunk("test", k)


def test_readout_of_half_precision_weights_reads_out_in_float32():
    data, W = _data(), _W().to(torch.bfloat16)
    result = _streamed(W, data, 1e-3, dtype=torch.bfloat16)
    reference = _streamed(W.float(), data, 1e-3, dtype=torch.bfloat16)
    assert result.test_mse == reference.test_mse and np.isfinite(result.train_mse)


def test_a_data_module_with_only_whole_sets_is_still_read_out():
    """A user's data module written for the dense readout (``readout_set`` / ``test_set``, no chunks) still works."""
    data = _data()

    class WholeSets:
        readout_set, test_set = data.readout_set, data.test_set

    module = TwoLayerModule(width=N, input_dim=D, readout=True)
    whole, chunked = module.fit_readout(WholeSets()), module.fit_readout(data)
    assert whole == pytest.approx(chunked, rel=1e-6)  # the same rows, summed in one piece or in chunks (float32)
