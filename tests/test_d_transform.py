"""The D-transform of a measured bulk (SPEC §4, issue 17): BGN locations and overlaps against the bulk a matrix has.

Truth from outside: Marchenko-Pastur's closed forms (rmt.bgn_rank_one), and, for non-MP bulks, the D-transform of the
*limiting* law computed from the population covariance by Silverstein's equation (tests/outlier_bulks.py), which no
sample of the bulk enters.
"""

from __future__ import annotations

import math

import pytest
import torch

from outlier_bulks import bulk, population_bgn_location, population_phi, true_edge
from spikelearn.functional.d_transform import FULL_SPECTRUM_MAX, bulk_measure, measured_bulk
from spikelearn.functional.engine import analyze
from spikelearn.functional.inputs import EngineConfig, TheoryInputs
from spikelearn.functional.rmt import bgn_rank_one
from spikelearn.functional.theory import hadamard_power_basis


def _mp_sample(N: int, d: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.linalg.svdvals(torch.randn(N, d, generator=g, dtype=torch.float64) / d**0.5)


@pytest.mark.parametrize(("N", "d"), [(750, 1500), (1500, 750), (1000, 1000)])
@pytest.mark.parametrize("theta", [1.5, 3.0])
def test_on_a_marchenko_pastur_bulk_the_location_is_bgn_closed_form(N, d, theta):
    # a sample of 750-1500 values: D above the edge is a smooth linear statistic, off its limit by O(1/n) (measured
    # below 5e-4 relative); 2e-3 leaves room for the edge's own fluctuation
    measure = bulk_measure(_mp_sample(N, d), N, d)
    expected = bgn_rank_one(theta, N / d).location
    assert measure.location(theta, measure.top * (1 + 1e-9)) == pytest.approx(expected, rel=2e-3)


@pytest.mark.parametrize(("N", "d"), [(750, 1500), (1500, 750)])
@pytest.mark.parametrize("side", ["left", "right"])
def test_on_a_marchenko_pastur_bulk_the_overlaps_are_bgn_closed_form(N, d, side):
    # -2 phi / (theta^2 D') and -2 phi~ / (theta^2 D') in W's orientation (swapped when N > d); same tolerance
    measure = bulk_measure(_mp_sample(N, d), N, d)
    spike = bgn_rank_one(2.0, N / d)
    overlaps = measure.overlaps(spike.location)
    expected = spike.left_overlap if side == "left" else spike.right_overlap
    assert getattr(overlaps, side) == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize(("N", "d"), [(400, 800), (800, 400), (500, 500)])
def test_the_independent_population_reference_is_bgn_on_marchenko_pastur(N, d):
    # the test's own reference, checked where a closed form exists (to the root finder's accuracy)
    assert population_bgn_location("mp", N, d, 2.0) == pytest.approx(bgn_rank_one(2.0, N / d).location, rel=1e-9)


def test_d_is_decreasing_above_the_bulk_and_the_critical_strength_inverts_it():
    measure = bulk_measure(_mp_sample(300, 600), 300, 600)
    z = [measure.top * f for f in (1.01, 1.1, 1.5, 3.0)]
    values = [measure.d_transform(x) for x in z]
    assert values == sorted(values, reverse=True)
    for x in z:
        assert measure.location(measure.critical_strength(x) * (1 + 1e-9), x) == pytest.approx(x, rel=1e-6)


def test_a_strength_below_the_critical_one_has_no_location():
    measure = bulk_measure(_mp_sample(300, 600), 300, 600)
    cut = measure.top * 1.05
    assert measure.location(0.99 * measure.critical_strength(cut), cut) is None


def test_d_is_not_defined_inside_the_bulk():
    measure = bulk_measure(_mp_sample(300, 600), 300, 600)
    with pytest.raises(ValueError, match="above the bulk"):
        measure.d_transform(0.5 * measure.top)


SHAPES = ["mp", "two_point", "row_profile", "shrunk_uniform"]
SIZES = [(200, 400), (512, 512), (1024, 512), (512, 1024)]  # the first through the full spectrum, the rest by SLQ


def _planted(shape: str, N: int, d: int) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """A bulk of the given shape plus strengths 2E and 1.3E (E its true edge) along a and a^2 (random right
    vectors): the BGN setting (low-rank part in generic position with the bulk)."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(N, generator=g, dtype=torch.float64)
    Q = hadamard_power_basis(a, 4)[1]
    V = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64))[0]
    edge = true_edge(shape, N, d)
    thetas = [2.0 * edge, 1.3 * edge]
    W = bulk(shape, N, d, seed=3) + sum(t * torch.outer(Q[:, i], V[:, i]) for i, t in enumerate(thetas))
    return W, a, thetas


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("N", "d"), SIZES)
def test_bgn_locations_on_the_measured_bulk_are_the_population_ones(shape, N, d):
    # the D-transform of the matrix's own bulk (outliers removed) against that of the limiting law, which no sample
    # enters: the location of the planted strengths. Measured: within 0.27 % at every size; 1 % allowed
    W, a, thetas = _planted(shape, N, d)
    analysis = analyze(W, TheoryInputs(a=a), EngineConfig(k=16), step=3)[0]
    measure = measured_bulk(W, analysis.spectrum, analysis.outliers)
    locations = [measure.location(t, analysis.outliers.cut) for t in thetas]
    assert locations == pytest.approx([population_bgn_location(shape, N, d, t) for t in thetas], rel=1e-2)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("N", "d"), SIZES)
def test_the_comparator_strengths_are_the_planted_ones(shape, N, d):
    # strengths from W alone (the bulk's row energies in the basis taken off): off by the fluctuation of the bulk's
    # rows in the basis, ~ theta / sqrt(d) + sqrt(2 (K+1) / d); measured at most 0.11 in units of W (strengths 1.8-8.6)
    W, a, thetas = _planted(shape, N, d)
    record = analyze(W, TheoryInputs(a=a), EngineConfig(k=16), step=3)[0].record()
    assert record["comparator_strengths"][:2] == pytest.approx(thetas, abs=0.15)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("N", "d"), SIZES)
def test_the_recorded_predicted_locations_are_the_population_bgn_ones(shape, N, d):
    # both together, as the record has them: measured within 1.5 %; 2.5 % allowed
    W, a, thetas = _planted(shape, N, d)
    record = analyze(W, TheoryInputs(a=a), EngineConfig(k=16), step=3)[0].record()
    expected = [population_bgn_location(shape, N, d, t) for t in thetas]
    assert record["predicted_locations"] == pytest.approx(expected, rel=2.5e-2)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("N", "d"), SIZES)
def test_on_planted_non_mp_bulks_the_comparator_counts_what_is_measured(shape, N, d):
    W, a, _ = _planted(shape, N, d)
    record = analyze(W, TheoryInputs(a=a), EngineConfig(k=16), step=3)[0].record()
    assert record["predicted_outliers_finite_n"] == record["outliers"] == 2


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("N", "d"), SIZES[1:])
def test_the_measured_outliers_sit_at_the_population_bgn_locations(shape, N, d):
    # BGN itself at these sizes (the measurement against the independent limit): the outlier fluctuates by
    # O(N^-1/2); measured within 2.5 %
    W, a, thetas = _planted(shape, N, d)
    values = analyze(W, TheoryInputs(a=a), EngineConfig(k=16), step=3)[0].outliers.values
    expected = [population_bgn_location(shape, N, d, t) for t in thetas]
    assert values == pytest.approx(expected, rel=4e-2)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("N", "d"), SIZES[1:])
def test_the_quadrature_d_transform_is_the_full_spectrum_one(shape, N, d):
    # above FULL_SPECTRUM_MAX the bulk is the resolved top values plus 8 probes x 6 Lanczos steps. Measured against
    # the full spectrum's D: at most 3.3 % at the cut (where the nearest bulk values dominate), 0.9 % at 1.5x the cut
    W, a, _ = _planted(shape, N, d)
    analysis = analyze(W, TheoryInputs(a=a), EngineConfig(k=16), step=3)[0]
    assert min(N, d) > FULL_SPECTRUM_MAX
    quadrature = measured_bulk(W, analysis.spectrum, analysis.outliers)
    full = bulk_measure(torch.linalg.svdvals(W)[analysis.outliers.count:], N, d)
    cut = analysis.outliers.cut
    errors = [abs(quadrature.d_transform(z) / full.d_transform(z) - 1) for z in (cut, 1.5 * cut)]
    assert errors[0] < 0.05 and errors[1] < 0.015, errors


def test_population_phi_matches_a_large_sample():
    # the Silverstein reference on a non-MP shape, against a 3000 x 1500 sample (to its O(1/n) accuracy)
    W = bulk("two_point", 3000, 1500, seed=1)
    measure = bulk_measure(torch.linalg.svdvals(W), 3000, 1500)
    z = 1.3 * true_edge("two_point", 3000, 1500)
    assert measure.phi(z) == pytest.approx(population_phi("two_point", 3000, 1500, z), rel=2e-3)
    assert math.isfinite(measure.d_derivative(z))


def test_the_quadrature_d_transform_on_a_training_trajectory():
    # real weights: 12 steps of eta = N^0.3, N^0.45, then 0.5 N^0.25 at N = d = n = 512 (spikes, a contracted non-MP
    # bulk). Measured against the full spectrum's D: at most 1.4 % at the cut along such trajectories (t = 2..100)
    from spikelearn.data import GaussianDataModule
    from spikelearn.functional import model as F
    from spikelearn.functional.activations import get_activation

    g = torch.Generator().manual_seed(0)
    N = 512
    W, a = F.init_first_layer(N, N, g, "gaussian"), F.init_second_layer(N, g, "gaussian")
    data, act = GaussianDataModule(input_dim=N, batch_size=N, target="he1", seed=0), get_activation("shifted_tanh")
    for t in range(1, 13):
        X, y, _ = data.full_batch(t)
        eta = (1.0 * N**0.3, 1.0 * N**0.45)[t - 1] if t <= 2 else 0.5 * N**0.25
        W = F.gradient_step(W, F.negative_gradient(W, a, X, y, act), eta)
    analysis = analyze(W, TheoryInputs(a=a), EngineConfig(), step=12)[0]
    assert analysis.outliers.count >= 1
    quadrature = measured_bulk(W, analysis.spectrum, analysis.outliers)
    full = bulk_measure(torch.linalg.svdvals(W.double())[analysis.outliers.count:], N, N)
    cut = analysis.outliers.cut
    assert abs(quadrature.d_transform(cut) / full.d_transform(cut) - 1) < 0.03
