"""Tests for spikelearn.functional.rmt (SPEC §3)."""

import math

import pytest
import torch

from spikelearn.functional import rmt
from spikelearn.functional.rmt import (
    bbp_threshold,
    bgn_rank_one,
    mp_bulk_edge,
    mp_density,
    mp_edges,
    mp_singular_density,
    tracy_widom1_cdf,
    tracy_widom1_quantile,
    tracy_widom_margin,
    tracy_widom_scale,
)


def test_all_unique():
    assert len(rmt.__all__) == len(set(rmt.__all__))


@pytest.mark.parametrize("c", [0.25, 0.5, 1.0, 2.0, 4.0])
def test_mp_edges_closed_form(c):
    lo, hi = mp_edges(c, 2.0)
    assert hi == pytest.approx(2.0 * (1 + math.sqrt(c)))
    assert lo == pytest.approx(2.0 * abs(1 - math.sqrt(c)))
    assert mp_bulk_edge(c, 2.0) == hi


@pytest.mark.parametrize("c", [0.25, 0.5, 2.0, 4.0])
def test_mp_density_normalised_and_mean(c):
    lo, hi = mp_edges(c)
    lam = torch.linspace(lo**2, hi**2, 200001, dtype=torch.float64)
    p = mp_density(lam, c)
    # trapezoid error on a square-root edge is O(h^1.5) ~ 1e-7 here; 1e-4 is generous
    assert float(torch.trapezoid(p, lam)) == pytest.approx(1.0, abs=1e-4)
    # mean non-zero eigenvalue of W W^T equals the energy per non-zero value: max(c, 1)
    assert float(torch.trapezoid(lam * p, lam)) == pytest.approx(max(c, 1.0), abs=1e-4)


@pytest.mark.parametrize("c", [0.5, 2.0])
def test_mp_singular_density_matches_sample(c):
    N = 800
    d = int(N / c)
    X = torch.randn(N, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / d**0.5
    s = torch.linalg.svdvals(X)
    grid = torch.linspace(0.0, 3.0, 30001, dtype=torch.float64)
    q = mp_singular_density(grid, c)
    # fraction of singular values below the middle of the bulk; sampling error O(1/N)
    mid = 0.5 * sum(mp_edges(c))
    frac_theory = float(torch.trapezoid(q * (grid < mid), grid))
    frac_sample = float((s < mid).double().mean())
    assert abs(frac_theory - frac_sample) < 0.02


def test_bbp_and_bgn_below_threshold():
    assert bbp_threshold(0.0625) == pytest.approx(0.5)
    p = bgn_rank_one(0.9 * bbp_threshold(2.0), 2.0)
    assert not p.detectable and p.left_overlap == 0.0 and p.location == mp_bulk_edge(2.0)


@pytest.mark.parametrize("c", [0.3, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("theta", [1.6, 3.0])
def test_bgn_transpose_rule_consistency(c, theta):
    # For c > 1 the transpose rule must equal the closed forms with the same c (SPEC §3)
    t2 = theta**2
    p = bgn_rank_one(theta, c)
    assert p.location == pytest.approx(math.sqrt((1 + t2) * (c + t2)) / theta)
    assert p.left_overlap == pytest.approx(1 - c * (1 + t2) / (t2 * (t2 + c)))
    assert p.right_overlap == pytest.approx(1 - (c + t2) / (t2 * (t2 + 1)))
    # and the location is continuous at the threshold: equals the edge there
    tc = bbp_threshold(c)
    assert bgn_rank_one(tc * (1 + 1e-9), c).location == pytest.approx(mp_bulk_edge(c), rel=1e-6)


def test_bgn_scale_equivariance():
    p1, p2 = bgn_rank_one(2.0, 0.5), bgn_rank_one(2.0, 0.5, scale=3.0)
    assert p2.location == pytest.approx(3 * p1.location)
    assert p2.left_overlap == p1.left_overlap


def test_tracy_widom_tabulated():
    # tabulated TW1 quantiles (Tracy-Widom 1996; Bejan 2005)
    assert tracy_widom1_quantile(0.95) == pytest.approx(0.9793, abs=2e-4)
    assert tracy_widom1_quantile(0.99) == pytest.approx(2.0234, abs=2e-4)
    assert tracy_widom1_quantile(0.90) == pytest.approx(0.4501, abs=2e-4)
    # mean of TW1 is -1.2065: integrate x dF by parts on [-6, 8]
    xs = [(-6 + 0.05 * i) for i in range(281)]
    F = [tracy_widom1_cdf(x) for x in xs]
    mean = 8 - sum(0.05 * 0.5 * (F[i] + F[i + 1]) for i in range(280))
    assert mean == pytest.approx(-1.2065, abs=5e-3)


def test_tracy_widom_margin_scale():
    assert tracy_widom_scale(1000, 1000) == pytest.approx(2 ** (1 / 3) / 2 * 1000 ** (-2 / 3))
    m = tracy_widom_margin(1000, 1000, 0.995, 2.0)
    assert m == pytest.approx(2.0 * tracy_widom_scale(1000, 1000) * tracy_widom1_quantile(0.995))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mp_bulk_edge(-1.0), "`c`"),
        (lambda: mp_edges(1.0, 0.0), "`scale`"),
        (lambda: bgn_rank_one(-1.0, 1.0), "`theta`"),
        (lambda: tracy_widom1_quantile(1.0), "`quantile`"),
        (lambda: tracy_widom_margin(10, 10, 0.3), "`quantile`"),
        (lambda: tracy_widom_scale(0, 10), "`N`"),
        (lambda: tracy_widom1_cdf(float("nan")), "`x`"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- Tracy-Widom quantile table (issue 10, item 4: no first-call stall) ---------------------------------------


def _tw1_quantile_solved(q: float) -> float:
    # the pre-table path: Brent's method on the Fredholm determinant
    from scipy import optimize

    return optimize.brentq(lambda x: rmt._tw1_cdf_cached(x, 80) - q, -3.9, 6.0, xtol=1e-12)


def test_tracy_widom_table_matches_solver_at_random_quantiles():
    # Hermite interpolation in logit(q) with exact slopes: worst of 200 random q was 1.7e-7, so 1e-6
    gen = torch.Generator().manual_seed(123)
    t = torch.rand(8, generator=gen, dtype=torch.float64) * math.log(0.9999 / 0.0001)
    for q in (1.0 / (1.0 + torch.exp(-t))).tolist():
        assert abs(rmt._tw1_quantile_from_table(q) - _tw1_quantile_solved(q)) < 1e-6, q


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 0.9999])
def test_tracy_widom_table_exact_at_common_quantiles(q):
    # table nodes: stored to 12 decimals from a solve with xtol 1e-13
    assert q in rmt._TW1_TABLE_Q
    assert tracy_widom1_quantile(q) == pytest.approx(_tw1_quantile_solved(q), abs=1e-9)


def test_tracy_widom_table_monotone():
    table = rmt._TW1_QUANTILE_TABLE
    qs = [row[0] for row in table]
    assert qs == sorted(qs) and qs[0] == 0.5 and qs[-1] == 0.9999
    for (q0, x0, m0), (q1, x1, m1), t0, t1 in zip(table, table[1:], rmt._TW1_TABLE_T, rmt._TW1_TABLE_T[1:]):
        secant = (x1 - x0) / (t1 - t0)
        # Fritsch-Carlson: a monotone cubic Hermite interval needs positive slopes with a^2 + b^2 <= 9
        assert secant > 0 and m0 > 0 and m1 > 0 and (m0 / secant) ** 2 + (m1 / secant) ** 2 <= 9.0
    dense = [rmt._tw1_quantile_from_table(0.5 + 0.4999 * i / 5000) for i in range(5001)]
    assert all(b > a for a, b in zip(dense, dense[1:]))


def test_tracy_widom_first_call_has_no_fredholm_evaluation():
    tracy_widom1_quantile.cache_clear()
    before = rmt._tw1_cdf_cached.cache_info()
    values = [tracy_widom1_quantile(q) for q in (0.995, 0.95, 0.99, 0.999, 0.7)]
    margin = tracy_widom_margin(1000, 1000)  # the outlier detector's default call
    assert rmt._tw1_cdf_cached.cache_info() == before
    assert values[0] == pytest.approx(2.4223, abs=1e-4)
    assert margin == pytest.approx(tracy_widom_scale(1000, 1000) * values[0])


def test_tracy_widom_quantile_below_table_uses_solver():
    tracy_widom1_quantile.cache_clear()
    before = rmt._tw1_cdf_cached.cache_info()
    x = tracy_widom1_quantile(0.3)
    assert rmt._tw1_cdf_cached.cache_info().misses > before.misses
    assert tracy_widom1_cdf(x) == pytest.approx(0.3, abs=1e-9)
    # continuous across the table's lower end
    assert tracy_widom1_quantile(0.4999999) == pytest.approx(tracy_widom1_quantile(0.5), abs=1e-5)
