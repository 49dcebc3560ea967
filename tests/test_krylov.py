"""The one block Krylov loop (spikelearn.functional.krylov): stopping rules, orthonormal bases, exact small cases."""

from __future__ import annotations

import pytest
import torch

from spikelearn.functional import krylov
from spikelearn.functional.krylov import ResidualRule, block_krylov, orthonormalize


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_all_unique():
    assert len(krylov.__all__) == len(set(krylov.__all__))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tiny", [1e-2, 1e-3, 1e-4])
def test_a_nearly_dependent_block_comes_back_orthogonal_to_the_basis(dtype, tiny):
    # a block of residuals can have lower rank than its width (p refined pairs from a Krylov block of fewer
    # columns); QR completes the missing directions from rounding, and in float32 such a direction could keep a
    # part in span(Q) (measured 6e-3, after which Ritz values exceeded s_1). The result must be orthogonal to Q to
    # 1e3 eps (float32: 1.2e-4) and orthonormal itself.
    d = 400
    Q = torch.linalg.qr(torch.randn(d, 96, generator=_gen(0), dtype=torch.float64))[0].to(dtype)
    free = torch.randn(d, 24, generator=_gen(1), dtype=torch.float64)
    mixed = free[:, :8] @ torch.randn(8, 8, generator=_gen(2), dtype=torch.float64)
    dependent = mixed + tiny * torch.randn(d, 8, generator=_gen(3), dtype=torch.float64)
    X = torch.cat([free, dependent], dim=1).to(dtype)
    X = X + Q @ torch.randn(96, 32, generator=_gen(4), dtype=torch.float64).to(dtype)  # and a part in span(Q)
    out = orthonormalize(X, Q, float(torch.linalg.vector_norm(X, dim=0).max()))
    eps = torch.finfo(dtype).eps
    assert float((Q.T @ out).abs().max()) <= 1e3 * eps
    assert float((out.T @ out - torch.eye(out.shape[1], dtype=dtype)).abs().max()) <= 1e3 * eps


def test_residual_rule_stops_on_the_top_k_values():
    W = torch.diag(torch.linspace(10.0, 1.0, 60, dtype=torch.float64))
    V0 = torch.randn(60, 6, generator=_gen(0), dtype=torch.float64)
    out = block_krylov(W, V0, ResidualRule(k=3, tol=1e-10, oversample=3), max_iters=100, max_basis=40)
    assert out.triplets.converged
    torch.testing.assert_close(out.triplets.values[:3], torch.linspace(10.0, 1.0, 60, dtype=torch.float64)[:3])


def test_a_basis_that_spans_everything_is_exact():
    # d = 12: the basis reaches R^d and the loop takes it exactly (the Ritz values are the singular values)
    W = torch.randn(30, 12, generator=_gen(5), dtype=torch.float64)
    V0 = torch.randn(12, 4, generator=_gen(6), dtype=torch.float64)
    out = block_krylov(W, V0, ResidualRule(k=12, tol=1e-12, oversample=0), max_iters=50, max_basis=100)
    torch.testing.assert_close(out.ritz_values, torch.linalg.svdvals(W), rtol=1e-10, atol=0)


def test_extra_left_products_ride_along():
    W = torch.randn(50, 40, generator=_gen(7), dtype=torch.float64)
    extra = torch.randn(50, 3, generator=_gen(8), dtype=torch.float64)
    V0 = torch.randn(40, 8, generator=_gen(9), dtype=torch.float64)
    out = block_krylov(W, V0, ResidualRule(k=2, tol=1e-8, oversample=2), max_iters=50, max_basis=40, extra_left=extra)
    torch.testing.assert_close(out.extra_products, W.T @ extra)
