"""The finite-N comparator (issue 17 item 1): BGN against the measured bulk, a basis that follows what was learned
(a, a^2, ... and the harmonics of the previous outliers), its low-rank part without W_0 (the bulk's energy in the
basis taken off); reported where its coverage holds, withheld with its reason where it would be silently wrong."""

from __future__ import annotations

import pytest
import torch

from outlier_bulks import bulk, true_edge
from spikelearn.functional.engine import analyze, reference_products
from spikelearn.functional.inputs import EngineConfig, EngineState, TheoryInputs
from spikelearn.functional.theory import hadamard_power_basis

N = D = 400


def _setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(N, generator=g, dtype=torch.float64) / N**0.5
    _, Q = hadamard_power_basis(a, 4)  # (N, 5)
    v = torch.randn(D, generator=g, dtype=torch.float64)
    return g, a, Q, v / v.norm()


def _record(W0: torch.Tensor, W: torch.Tensor, a: torch.Tensor) -> dict:
    # W0 is where W came from; the comparator reads W alone (no W_0 is kept)
    return analyze(W, TheoryInputs(a=a), EngineConfig(k=16), step=2)[0].record()


@pytest.mark.parametrize("strength", [2.0, 4.0])
def test_a_spike_inside_the_basis_is_covered_and_predicted(strength):
    # W = W0 + theta q_0 v^T: what was learned lies in span(a, ...): coverage ~1 and the finite-N count is the
    # measured one (the BGN overlap corrects for the finite strength: the raw share is only ~0.8 at theta = 2)
    g, a, Q, v = _setup()
    W0 = torch.randn(N, D, generator=g, dtype=torch.float64) / D**0.5
    record = _record(W0, W0 + strength * torch.outer(Q[:, 0], v), a)
    assert record["comparator_coverage"] > 0.9
    assert record["predicted_outliers_finite_n"] == record["outliers"] == 1


def test_a_spike_outside_the_basis_withholds_the_count():
    # the learned direction is orthogonal to span(a, ..., a^5): the projected low-rank part is empty, so the
    # comparator would predict 0 against 1 measured; it says why instead
    g, a, Q, v = _setup()
    u = torch.randn(N, generator=g, dtype=torch.float64)
    u = u - Q @ (Q.T @ u)
    W0 = torch.randn(N, D, generator=g, dtype=torch.float64) / D**0.5
    record = _record(W0, W0 + 4.0 * torch.outer(u / u.norm(), v), a)
    assert record["outliers"] == 1 and record["comparator_coverage"] < 0.1
    assert record["predicted_outliers_finite_n"] is None and "coverage" in record["theory_note"]


def test_a_bulk_that_is_not_marchenko_pastur_gets_its_own_bgn_count():
    # a two-point population covariance: its edge is ~9 % above the MP edge at its noise scale (many margins); the
    # comparator measures BGN against this bulk's own D-transform, so it counts the spike (the old MP comparator
    # had to be withheld here). Locations against the independent limit: tests/test_d_transform.py
    g, a, Q, v = _setup()
    W0 = bulk("two_point", N, D, seed=5)
    W = W0 + 1.6 * true_edge("two_point", N, D) * torch.outer(Q[:, 0], v)
    record = _record(W0, W, a)
    assert record["outliers"] == record["predicted_outliers_finite_n"] == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_w0_the_strengths_are_those_of_w_minus_w0(seed):
    # two steps' worth: W = W0 + L with L in span(a, a^2); the strengths from W alone (the bulk's energy in the basis
    # taken off) against the singular values of Q_a^T (W - W0). They differ by W0's part in the basis: the cross term
    # 2 theta q^T W0 v ~ 2 theta / sqrt(d) = 0.15 at theta = 1.5, d = 400, and the Gram's own fluctuation
    # sqrt(2 (K+1) / d) ~ 0.16 in squared units. Measured over 20 seeds: mean 0.06, worst 0.14; 0.2 is allowed
    from spikelearn.functional.d_transform import measured_bulk
    from spikelearn.functional.two_layer import ComparatorBasis, low_rank_strengths

    g, a, Q, v = _setup(seed)
    W0 = torch.randn(N, D, generator=g, dtype=torch.float64) / D**0.5
    v2 = torch.randn(D, generator=g, dtype=torch.float64)
    W = W0 + 3.0 * torch.outer(Q[:, 0], v) + 1.5 * torch.outer(Q[:, 1], v2 / v2.norm())
    analysis = analyze(W, TheoryInputs(a=a), EngineConfig(k=16), step=2)[0]
    U = analysis.spectrum.left[:, : analysis.outliers.count]
    bulk_law = measured_bulk(W, analysis.spectrum, analysis.outliers)
    strengths = low_rank_strengths(W, ComparatorBasis(Q, 0), bulk_law, U, analysis.outliers.values)
    expected = torch.linalg.svdvals(Q.T @ (W - W0))[:2].tolist()
    assert strengths[:2] == pytest.approx(expected, abs=0.2)


def _harmonic_case(seed: int = 0):
    # a learned direction u outside span(a, ...) at the previous analysis, then a new spike along its harmonic a * u^2
    from spikelearn.functional.two_layer import comparator_basis

    g, a, Q, v = _setup(seed)
    u = torch.randn(N, generator=g, dtype=torch.float64)
    u = u - Q @ (Q.T @ u)
    u = u / u.norm()
    h = a * u**2
    h = h - Q @ (Q.T @ h) - u * (u @ h)
    h = h / h.norm()
    v2 = torch.randn(D, generator=g, dtype=torch.float64)
    v2 = v2 - v * (v @ v2)
    W0 = torch.randn(N, D, generator=g, dtype=torch.float64) / D**0.5
    W_before = W0 + 4.0 * torch.outer(u, v)
    W_after = W_before + 3.0 * torch.outer(h, v2 / v2.norm())
    return a, W_before, W_after, comparator_basis


def test_the_basis_takes_the_harmonics_of_the_previous_outliers():
    a, W_before, _, comparator_basis = _harmonic_case()
    first, state = analyze(W_before, TheoryInputs(a=a), EngineConfig(k=16), step=5)
    _, Qa = hadamard_power_basis(a, 4)
    C = comparator_basis(a, Qa, state.identities.left).C
    u = first.spectrum.left[:, 0].to(torch.float64)
    harmonic = a * u**2
    assert float(torch.linalg.vector_norm(C.T @ harmonic) / torch.linalg.vector_norm(harmonic)) > 1 - 1e-9


def test_a_spike_born_on_a_harmonic_of_a_learned_direction_is_covered_and_counted():
    # the previous analysis saw u; the new spike along a * u^2 is in the comparator's basis: covered, and counted
    a, W_before, W_after, _ = _harmonic_case()
    _, state = analyze(W_before, TheoryInputs(a=a), EngineConfig(k=16), step=5)
    record = analyze(W_after, TheoryInputs(a=a), EngineConfig(k=16), state, step=6)[0].record()
    assert record["comparator_coverage"] > 0.9
    assert record["predicted_outliers_finite_n"] == record["outliers"] == 2


def test_without_the_previous_analysis_a_learned_direction_outside_the_basis_is_withheld():
    # the same matrix analysed cold: u is not in span(a, ...) and no previous outlier brings it: withheld, saying why
    a, _, W_after, _ = _harmonic_case()
    record = analyze(W_after, TheoryInputs(a=a), EngineConfig(k=16), step=6)[0].record()
    assert record["predicted_outliers_finite_n"] is None and "coverage" in record["theory_note"]


def test_an_mp_bulk_keeps_the_count():
    g, a, Q, v = _setup(1)
    W0 = bulk("mp", N, D, seed=6)
    record = _record(W0, W0 + 3.0 * torch.outer(Q[:, 0], v), a)
    assert record["predicted_outliers_finite_n"] == 1


def _cases():
    # scripts/comparator_cases.py: the same cases, with the table of measured vs comparator vs coverage
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "comparator_cases.py"
    spec = importlib.util.spec_from_file_location("comparator_cases", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("N", [512, 1024])
@pytest.mark.parametrize("schedule", ["constant N^0.45", "inverse_sqrt", "packaged"])
@pytest.mark.parametrize("target", ["he1", "bounded_he2"])
def test_past_step_10_the_comparator_is_within_one_or_withheld_with_its_reason(tmp_path, N, schedule, target):
    # many-step runs at N = 512 and 1024, both batch modes, analysed every other step: at every analysed step
    # t >= 10 (scripts/comparator_cases.py, which gives the per-case table, judges every step) the finite-N count is
    # within 1 of the measured count, or null with "finite-N count withheld" and its reason (before issue 17: 5 = the
    # basis size against 2 measured for eta = N^0.45 held)
    film = _cases().film(N, schedule, target, 30, tmp_path, threads=1, every=2)
    late = [r for r in film if r["step"] >= 10]
    assert {r["batches"] for r in late} == {"independent", "reused"} and len(late) == 2 * 11
    for r in late:
        if r["predicted_outliers_finite_n"] is None:
            assert "finite-N count withheld" in r["theory_note"], r
        else:
            assert abs(r["predicted_outliers_finite_n"] - r["outliers"]) <= 1, r


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_learned_direction_that_sinks_back_into_the_bulk_is_not_predicted(seed):
    # the previous analysis's outlier (theta = 1.8, BGN location 2.36 against the edge 2) weakens below the BBP
    # threshold (theta = 0.6): its old vector still carries the bulk's top directions, so its raw projection would
    # overstate it (the reason the learned directions' strengths are read off their own location by BGN's inverse)
    g, a, Q, v = _setup(seed)
    u = torch.randn(N, generator=g, dtype=torch.float64)
    u = u / u.norm()
    W0 = torch.randn(N, D, generator=g, dtype=torch.float64) / D**0.5
    _, state = analyze(W0 + 1.8 * torch.outer(u, v), TheoryInputs(a=a), EngineConfig(k=16), step=10)
    assert state.identities.left.shape[1] == 1
    record = analyze(W0 + 0.6 * torch.outer(u, v), TheoryInputs(a=a), EngineConfig(k=16), state, step=11)[0].record()
    assert record["outliers"] == record["predicted_outliers_finite_n"] == 0


def test_the_comparator_can_be_switched_off_and_says_so():
    g, a, Q, v = _setup()
    W0 = torch.randn(N, D, generator=g, dtype=torch.float64) / D**0.5
    config = EngineConfig(k=16, comparator=False)
    record = analyze(W0 + 3.0 * torch.outer(Q[:, 0], v), TheoryInputs(a=a), config, step=2)[0].record()
    assert record["outliers"] == 1 and record["predicted_outliers_finite_n"] is None
    assert record["comparator_coverage"] is None and "comparator not computed" in record["theory_note"]


@pytest.mark.parametrize("value", [1, "yes", None])
def test_the_comparator_switch_must_be_a_boolean(value):
    with pytest.raises(ValueError, match="`comparator`"):
        EngineConfig(comparator=value)
