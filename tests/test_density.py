"""Tests for spikelearn.functional.density (stochastic Lanczos quadrature of the singular-value density).

Accuracy bound used throughout (Kolmogorov distance ``D = sup_t |F_hat(t) - F_n(t)|`` against the exact ESD from
``torch.linalg.svdvals`` in float64, defaults ``m = 16`` Lanczos steps):

    D <= 1.95 * sqrt(2 / (n p)) + 0.01 + 2 / n.

* Statistical part: for a probe uniform on the sphere, ``z^T 1{A <= t^2} z`` has mean ``F(t)`` and variance
  ``2F(1-F)/(n+2)``; as a process in ``t`` the average of ``p`` probes is ``sqrt(2/(np))`` times a Brownian bridge
  in ``F``, whose sup has 99.9 % quantile 1.95 (Kolmogorov's law).
* Quadrature part: the cell-spread Gauss quadrature of the exact ESD itself (infinitely many probes, i.e. Lanczos
  from the uniform vector) is within 0.0063 of the ESD at m = 16 for all five matrices below at n = 2048
  (0.0043 at m = 20, 0.0096 at m = 12), so 0.01 is 1.6x the worst measured.
* Discreteness: a continuous CDF is at least 1/(2n) from a step CDF, and the ESD of one draw wobbles around its
  law by a few 1/n (the quadrature check above at n = 128 measured 0.0137 = 0.01 + 0.47/n).

Measured over 10 seeds at N = 256 with m = 20 the worst case used 84 % of the bound without the 2/n term (p = 8)
and 76 % (p = 16); at N = 2048 at most 42 % (p = 8, 2 seeds).
"""

from __future__ import annotations

import math

import pytest
import torch

from spikelearn.functional import density as density_module
from spikelearn.functional.density import SpectralDensity, singular_value_density

KINDS = ["mp_c0.5", "mp_c1", "mp_c2", "spiked_rank3", "two_point_sigma"]


def _matrix(kind: str, N: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind.startswith("mp_c"):
        d = int(round(N / float(kind[4:])))
        return torch.randn(N, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    d = N
    X = torch.randn(N, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    if kind == "spiked_rank3":  # outliers at the BGN locations 5.2, 3.33, 2.5 (edge 2)
        U = torch.linalg.qr(torch.randn(N, 3, generator=g, dtype=torch.float64))[0]
        V = torch.linalg.qr(torch.randn(d, 3, generator=g, dtype=torch.float64))[0]
        return X + U @ torch.diag(torch.tensor([5.0, 3.0, 2.0], dtype=torch.float64)) @ V.T
    if kind == "two_point_sigma":  # Z Σ^{1/2}, Σ = diag(1, 4) half and half: a non-MP bulk
        sigma = torch.where(torch.arange(d) < d // 2, 1.0, 4.0).to(torch.float64)
        return X * sigma.sqrt()
    raise AssertionError(kind)


def _kolmogorov(rho: SpectralDensity, s: torch.Tensor) -> float:
    # F_hat is continuous, F_n jumps by 1/n at each s_i: the sup is attained at a jump, on one of its sides
    s = s.sort().values
    n = s.numel()
    F = rho.cdf(s)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum((F - i / n).abs(), (F - (i - 1) / n).abs()).max())


def _bound(n: int, p: int) -> float:
    return 1.95 * math.sqrt(2.0 / (n * p)) + 0.01 + 2.0 / n


def _check_kolmogorov(kind: str, N: int, p: int) -> None:
    W = _matrix(kind, N)
    s = torch.linalg.svdvals(W)
    rho = singular_value_density(W, num_probes=p)  # m = 16
    distance = _kolmogorov(rho, s)
    assert distance <= _bound(s.numel(), p), (kind, distance, _bound(s.numel(), p))


@pytest.mark.parametrize("kind", KINDS)
def test_kolmogorov_distance_n256(kind):
    _check_kolmogorov(kind, 256, 8)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_kolmogorov_distance_n2048(kind):
    _check_kolmogorov(kind, 2048, 8)


def test_kolmogorov_float32_matrix():
    # float32 products, float64 coefficients: same bound as float64 (rounding ~1e-7 relative is far below it)
    W = _matrix("mp_c1", 256)
    rho = singular_value_density(W.float(), num_probes=8)
    assert rho.nodes.dtype == torch.float64
    assert _kolmogorov(rho, torch.linalg.svdvals(W)) <= _bound(256, 8)


def test_deflated_bulk_with_exact_outliers():
    # the bulk of (I - U U^T) part: with the 3 outliers given, the rest is SLQ over n - 3 values
    W = _matrix("spiked_rank3", 256)
    _, s, Vh = torch.linalg.svd(W)
    rho = singular_value_density(W, top_values=s[:3], top_vectors=Vh[:3].T, num_probes=8)
    assert rho.bulk_size == 253
    assert _kolmogorov(rho, s) <= _bound(253, 8)
    assert float(rho.nodes.max()) <= float(s[3]) * (1 + 1e-6)  # no bulk node above the top bulk value


@pytest.mark.parametrize("shape", [(256, 256), (256, 512), (512, 256)])
@pytest.mark.parametrize("with_vectors", [True, False])
def test_outliers_land_in_their_bins_exactly(shape, with_vectors):
    N, d = shape
    g = torch.Generator().manual_seed(3)
    X = torch.randn(N, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    U = torch.linalg.qr(torch.randn(N, 3, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(d, 3, generator=g, dtype=torch.float64))[0]
    W = X + U @ torch.diag(torch.tensor([6.0, 4.0, 3.0], dtype=torch.float64)) @ V.T
    _, s, Vh = torch.linalg.svd(W, full_matrices=False)
    top = s[:3]
    kwargs = {"top_vectors": Vh[:3].T} if with_vectors else {}
    rho = singular_value_density(W, top_values=top, num_probes=8, **kwargs)
    bulk_top = float(s[3])
    gaps = [float(top[2]) - bulk_top, float(top[1] - top[2]), float(top[0] - top[1])]
    assert min(gaps) > 0.3
    # one bin per outlier, a gap bin below each; the first bin holds the whole bulk
    edges = [0.0, bulk_top + 0.1]
    for value in reversed(top.tolist()):
        edges += [value - 0.1, value + 0.1]
    edges += [float(top[0]) + 1.0]
    counts = rho.histogram(edges)
    exact = torch.histogram(s, torch.tensor(edges, dtype=torch.float64)).hist
    assert counts.sum() == pytest.approx(min(N, d), abs=1e-9)
    if with_vectors:
        # outlier bins (2, 4, 6) hold exactly one value, gap bins (1, 3, 5) exactly none
        torch.testing.assert_close(counts[1:], exact[1:], rtol=0, atol=1e-9)
    else:
        # without vectors only the bins at and above min(top_values) are exact (no bulk mass there); just below
        # it, Ritz values still converging to the lowest outlier carry some bulk mass (measured 0.21 at (512, 256))
        torch.testing.assert_close(counts[3:], exact[3:], rtol=0, atol=1e-9)
        assert float((counts[1:3] - exact[1:3]).abs().max()) < 0.5


def test_without_top_values_outliers_are_smeared():
    # the reason for `top_values`: SLQ alone gives each outlier a random weight (mean 1, spread ~sqrt(2/p))
    W = _matrix("spiked_rank3", 256)
    s = torch.linalg.svdvals(W)
    counts = singular_value_density(W, num_probes=8).histogram([0.0, float(s[3]) + 0.05, float(s[0]) + 1.0])
    assert counts.sum() == pytest.approx(256)
    assert abs(float(counts[1]) - 3.0) > 1e-3


def test_histogram_counts_sum_and_options():
    W = _matrix("mp_c1", 256)
    s = torch.linalg.svdvals(W)
    rho = singular_value_density(W)
    edges = torch.linspace(0.0, 2.2, 45, dtype=torch.float64)
    counts = rho.histogram(edges)
    assert counts.shape == (44,) and counts.dtype == torch.float64 and bool((counts >= 0).all())
    assert float(counts.sum()) == pytest.approx(256, abs=1e-9)
    # cumulative counts are n * CDF at the edges: within n * bound of the exact histogram's
    exact = torch.histogram(s, edges).hist
    assert float((counts.cumsum(0) - exact.cumsum(0)).abs().max()) <= 256 * _bound(256, 8)
    rounded = rho.histogram(edges, integer=True)
    assert float(rounded.sum()) == 256 and torch.equal(rounded, rounded.round())
    assert float((rounded - counts).abs().max()) < 1.0
    # edges inside the support: folded into the end bins, or dropped
    inner = [0.5, 1.0, 1.5]
    folded, dropped = rho.histogram(inner), rho.histogram(inner, fold_outside=False)
    assert float(folded.sum()) == pytest.approx(256)
    assert float(dropped.sum()) == pytest.approx(256 * float(rho.cdf([1.5]) - rho.cdf([0.5])))
    assert float(dropped.sum()) < 256


def test_cdf_monotone_and_limits():
    rho = singular_value_density(_matrix("two_point_sigma", 256))
    t = torch.linspace(-1.0, 5.0, 601, dtype=torch.float64)
    F = rho.cdf(t)
    assert bool((F[1:] >= F[:-1] - 1e-15).all())
    assert float(F[0]) == 0.0 and float(F[-1]) == pytest.approx(1.0)


def test_density_integrates_to_one_and_tracks_broadened_esd():
    W = _matrix("mp_c0.5", 256)
    s = torch.linalg.svdvals(W)
    rho = singular_value_density(W)
    grid = torch.linspace(-1.0, 4.0, 2001, dtype=torch.float64)
    h = 0.1
    est = rho.density(grid, bandwidth=h)
    assert float(torch.trapezoid(est, grid)) == pytest.approx(1.0, abs=1e-6)
    exact = (torch.exp(-0.5 * ((grid[:, None] - s[None, :]) / h) ** 2) / (h * math.sqrt(2 * math.pi))).mean(1)
    # ρ̂ - ρ = ∫ φ_h'(x - t) (F̂ - F)(t) dt, so |ρ̂ - ρ| <= ‖φ_h'‖_1 D = 2 φ_h(0) D
    assert float((est - exact).abs().max()) <= 2.0 / (h * math.sqrt(2 * math.pi)) * _bound(s.numel(), 8)
    default = rho.density(grid)  # bandwidth = median cell width
    assert float(torch.trapezoid(default, grid)) == pytest.approx(1.0, abs=1e-3)


def test_trace_frobenius():
    # Σ s_i^2 = ‖W‖_F^2 is a degree-1 polynomial of A: Gauss quadrature is exact per probe, only the probes vary
    # (relative std sqrt(2 Var(λ) / (n p)) / E λ = sqrt(2 / (n p)) for MP c = 1), so 5 standard deviations
    W = _matrix("mp_c1", 256)
    rho = singular_value_density(W, num_probes=8)
    fro = float(W.square().sum())
    assert rho.trace(torch.square) == pytest.approx(fro, rel=5 * math.sqrt(2 / (256 * 8)))
    _, s, Vh = torch.linalg.svd(_matrix("spiked_rank3", 256))
    deflated = singular_value_density(_matrix("spiked_rank3", 256), top_values=s[:3], top_vectors=Vh[:3].T)
    assert deflated.trace(torch.square) == pytest.approx(float(s.square().sum()), rel=0.02)


def test_breakdown_gives_exact_quadrature():
    # all singular values equal: the Krylov space of every probe is invariant after one step
    Q = torch.linalg.qr(torch.randn(64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    rho = singular_value_density(2.0 * Q, num_probes=4, lanczos_steps=20)
    assert rho.products == 40
    torch.testing.assert_close(rho.cdf([1.99, 2.01]), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert rho.histogram([0.0, 1.9, 2.1, 3.0]).tolist() == pytest.approx([0.0, 64.0, 0.0])


def test_small_matrix_caps_steps():
    W = torch.randn(5, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rho = singular_value_density(W, num_probes=3, lanczos_steps=50)
    assert rho.size == 5 and rho.nodes.shape == (3, 5) and rho.products == 10
    s = torch.linalg.svdvals(W)
    # 5 steps on a 5-dimensional space find every eigenvalue: each probe's nodes are the exact s_i
    torch.testing.assert_close(rho.nodes, s.flip(0).expand(3, 5), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(48, 32), (32, 48)])
def test_shapes_dtypes_determinism(dtype, shape):
    W = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    rho = singular_value_density(W, num_probes=5, lanczos_steps=7, seed=3)
    assert isinstance(rho, SpectralDensity)
    assert rho.nodes.shape == rho.weights.shape == (5, 7)
    assert rho.nodes.dtype == rho.weights.dtype == rho.top_values.dtype == torch.float64
    assert rho.nodes.device == W.device and rho.top_values.shape == (0,)
    assert rho.size == 32 and rho.bulk_size == 32 and rho.products == 14
    torch.testing.assert_close(rho.weights.sum(1), torch.ones(5, dtype=torch.float64))
    assert bool((rho.nodes[:, 1:] >= rho.nodes[:, :-1]).all())
    again = singular_value_density(W, num_probes=5, lanczos_steps=7, seed=3)
    assert torch.equal(rho.nodes, again.nodes) and torch.equal(rho.weights, again.weights)
    other = singular_value_density(W, num_probes=5, lanczos_steps=7, seed=4)
    assert not torch.equal(rho.weights, other.weights)
    assert rho.cdf([0.0, 1.0]).shape == (2,) and rho.density([0.0, 1.0, 2.0]).shape == (3,)


def test_top_values_sorted_and_counted():
    W = _matrix("spiked_rank3", 64)
    _, s, Vh = torch.linalg.svd(W)
    rho = singular_value_density(W, top_values=s[:2].flip(0), top_vectors=Vh[:2].flip(0).T)
    assert rho.top_values.tolist() == s[:2].tolist() and rho.bulk_size == 62


def test_public_names():
    import spikelearn.functional as F

    assert density_module.__all__ == ["SpectralDensity", "singular_value_density"]
    assert F.singular_value_density is singular_value_density and F.SpectralDensity is SpectralDensity
    assert len(F.__all__) == len(set(F.__all__))


_W = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"W": _W[0]}, "`W` must be 2-D"),
        ({"W": _W.numpy()}, "`W` must be a torch.Tensor"),
        ({"W": _W.to(torch.bfloat16)}, "`W` must be float32 or float64"),
        ({"W": torch.where(_W > 1.0, float("nan"), _W)}, "`W` has NaN or Inf"),
        ({"W": torch.where(_W > 1.0, float("inf"), _W)}, "`W` has NaN or Inf"),
        ({"W": _W, "num_probes": 0}, "`num_probes`"),
        ({"W": _W, "num_probes": True}, "`num_probes`"),
        ({"W": _W, "lanczos_steps": 2.5}, "`lanczos_steps`"),
        ({"W": _W, "seed": 0.5}, "`seed`"),
        ({"W": _W, "top_values": torch.ones(4)}, "`top_values` must have fewer than"),
        ({"W": _W, "top_values": torch.tensor([-1.0])}, "`top_values` must be finite and non-negative"),
        ({"W": _W, "top_vectors": torch.ones(4, 1)}, "`top_vectors` needs `top_values`"),
        ({"W": _W, "top_values": torch.ones(1), "top_vectors": torch.ones(6, 1)}, "`top_vectors` must have shape"),
    ],
)
def test_errors(kwargs, match):
    W = kwargs.pop("W")
    with pytest.raises(ValueError, match=match):
        singular_value_density(W, **kwargs)


def test_method_errors():
    rho = singular_value_density(_W)
    with pytest.raises(ValueError, match="`edges` must be strictly increasing"):
        rho.histogram([1.0, 0.5])
    with pytest.raises(ValueError, match="`edges` must be strictly increasing"):
        rho.histogram([1.0])
    with pytest.raises(ValueError, match="`points` must be a 1-D"):
        rho.cdf([[0.0, 1.0]])
    with pytest.raises(ValueError, match="`bandwidth`"):
        rho.density([0.0], bandwidth=0.0)


def test_bench_density_script_runs(capsys):
    # the benchmark's plumbing at a toy size (timings are never asserted)
    import importlib.util
    import sys
    from pathlib import Path

    scripts = Path(__file__).resolve().parents[1] / "scripts"
    if str(scripts) not in sys.path:
        sys.path.insert(0, str(scripts))
    spec = importlib.util.spec_from_file_location("bench_density", scripts / "bench_density.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (row,) = bench.main(["--sizes", "128", "--repeats", "1", "--k", "4"])
    assert row["products"] == 32 and 0.0 <= row["ks"] <= 1.0
    assert "N=d=n" in capsys.readouterr().out
