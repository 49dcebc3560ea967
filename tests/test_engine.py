"""Tests for the spectral engine (SPEC §4): spikelearn.functional.spectral, .engine and its stages.

Tolerance scales: outlier locations and overlaps fluctuate on the N^{-1/2} scale
(1/sqrt(1500) = 0.026), the top bulk value on the Tracy-Widom N^{-2/3} scale.
"""

import json
import math

import pytest
import torch

from spikelearn.functional import engine, spectral
from spikelearn.functional.alignment import left_alignment, order_decomposition, outlier_alignment
from spikelearn.functional.engine import Analysis, analyze, reference_products
from spikelearn.functional.inputs import EngineConfig, EngineState, TheoryInputs
from spikelearn.functional.outliers import EDGE_WINDOW, detect_outliers, fit_soft_edge
from spikelearn.functional.rmt import bgn_rank_one, mp_bulk_edge
from spikelearn.functional.spectral import singular_values_full, top_singular_triplets
from spikelearn.functional.spectrum import WARM_EXTRA
from spikelearn.functional.theory import hadamard_power_basis

F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _noise(N, d, seed, dtype=F64):
    return torch.randn(N, d, generator=_gen(seed), dtype=dtype) / d**0.5


def _planted(N, d, thetas, seed):
    g = _gen(seed)
    X = torch.randn(N, d, generator=g, dtype=F64) / d**0.5
    r = len(thetas)
    U = torch.linalg.qr(torch.randn(N, r, generator=g, dtype=F64))[0]
    V = torch.linalg.qr(torch.randn(d, r, generator=g, dtype=F64))[0]
    W = X + sum(t * torch.outer(U[:, i], V[:, i]) for i, t in enumerate(thetas))
    return W, U, V


def _analyze(W, theory=None, state=None, step=0, **config) -> Analysis:
    """One analysis with ``EngineConfig(**config)``; the record is ``_analyze(...).record()``."""
    return analyze(W, theory, EngineConfig(**config), state, step)[0]


def _rec(W, theory=None, state=None, step=0, **config) -> dict:
    return _analyze(W, theory, state, step, **config).record()


def _references(a, K, step, W_prev=None, W0=None) -> EngineState:
    """A state holding W_{t-1}^T Q_a computed from the matrix (what a tracker would have kept); ``W0`` is not needed
    by the engine any more and is accepted for the tests' readability."""
    return EngineState(
        products=None if W_prev is None else reference_products(W_prev, a, K), products_step=step - 1,
    )


@pytest.mark.parametrize("module", [spectral, engine])
def test_all_unique(module):
    assert len(module.__all__) == len(set(module.__all__))


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_planted_spikes_match_bgn(c):
    N = 1500
    d = int(N / c)
    thetas = [3.0, 2.0, 0.5 * c**0.25]  # two above BBP, one below
    W, U, V = _planted(N, d, thetas, seed=int(10 * c))
    s = _rec(W, k=8)
    assert s["outliers"] == 2  # the sub-threshold spike is not reported
    tri = top_singular_triplets(W, 2, tol=1e-6)
    for i, theta in enumerate(thetas[:2]):
        p = bgn_rank_one(theta, c)
        # fluctuations are O(min(N, d)^-1/2): 1/sqrt(1500) = 0.026, 1/sqrt(750) = 0.037.
        # location: worst observed ~1/sqrt(min(N, d)); tolerance 1.2/sqrt(min(N, d)) (0.03 at 1500)
        scale = min(N, d) ** -0.5
        assert s["outlier_values"][i] == pytest.approx(p.location, abs=1.2 * scale)
        # overlaps: larger constants; tolerance 2/sqrt(min(N, d)) (0.05 at 1500)
        assert float((tri.left[:, i] @ U[:, i]) ** 2) == pytest.approx(p.left_overlap, abs=2 * scale)
        assert float((tri.right[:, i] @ V[:, i]) ** 2) == pytest.approx(p.right_overlap, abs=2 * scale)


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_pure_noise_few_draws(c):
    N = 300
    d = int(N / c)
    hits = sum(_rec(_noise(N, d, seed), k=4)["outliers"] > 0 for seed in range(10))
    assert hits == 0  # P(any) <= 2 % per draw, so 0 of 10 is the likely outcome (P >= 0.8)


@pytest.mark.slow
@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_pure_noise_200_draws(c):
    N = 400
    d = int(N / c)
    hits = sum(_rec(_noise(N, d, 1000 + seed), k=4)["outliers"] > 0 for seed in range(200))
    assert hits <= 4  # contract: at most 2 % of draws report any outlier


@pytest.mark.slow
@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_planted_spikes_many_seeds(c):
    N = 1500
    d = int(N / c)
    for seed in range(5):
        W, _, _ = _planted(N, d, [2.5, 1.8, 0.4], seed=100 + seed)
        s = _rec(W, k=8)
        assert s["outliers"] == 2
        for v, th in zip(s["outlier_values"], [2.5, 1.8]):
            # location std is ~0.7/sqrt(min(N, d)) (measured); the worst of 10 draws per c
            # reaches ~1.5/sqrt(min(N, d)), so 2.5/sqrt(min(N, d)) (0.065 at 1500)
            assert v == pytest.approx(bgn_rank_one(th, c).location, abs=2.5 * min(N, d) ** -0.5)


@pytest.mark.parametrize("shape", [(200, 120), (120, 200)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_topk_cold_and_warm_match_full_svd(shape, dtype):
    N, d = shape
    g = _gen(3)
    Ut = torch.linalg.qr(torch.randn(N, 3, generator=g, dtype=F64))[0]
    Vt = torch.linalg.qr(torch.randn(d, 3, generator=g, dtype=F64))[0]
    W64 = _noise(N, d, 4) + Ut @ torch.diag(torch.tensor([3.142, 2.718, 2.2], dtype=F64)) @ Vt.T
    W = W64.to(dtype)
    ref = torch.linalg.svd(W64)
    cold = top_singular_triplets(W, 6, tol=1e-5)
    torch.testing.assert_close(cold.values.double(), ref.S[:6], rtol=1e-4, atol=0)
    # planted, well separated vectors agree up to sign (error ~ residual / gap)
    for i in range(3):
        assert abs(float(cold.right[:, i].double() @ ref.Vh[i])) == pytest.approx(1, abs=1e-4)
        assert abs(float(cold.left[:, i].double() @ ref.U[:, i])) == pytest.approx(1, abs=1e-4)
    W2 = (W64 + 0.05 * _noise(N, d, 5)).to(dtype)
    warm = top_singular_triplets(W2, 6, tol=1e-5, warm_start=cold.right)
    ref2 = torch.linalg.svdvals(W2.double())
    torch.testing.assert_close(warm.values.double(), ref2[:6], rtol=1e-4, atol=0)


def test_warm_start_fewer_products():
    W, _, _ = _planted(600, 600, [3.0, 2.2], seed=7)
    state = analyze(W, config=EngineConfig(k=16))[1]
    W2 = W + 0.01 * _noise(600, 600, 8)
    warm = _rec(W2, state=EngineState(warm=state.warm), k=16)
    cold2 = _rec(W2, k=16)
    assert warm["outliers"] == cold2["outliers"] == 2
    assert warm["matvecs"] < cold2["matvecs"]
    ref = torch.linalg.svdvals(W2)[:2]
    torch.testing.assert_close(torch.tensor(warm["outlier_values"], dtype=F64), ref, rtol=1e-4, atol=0)


def test_warm_start_vectors_are_ritz_vectors_in_the_order_of_the_values():
    # right_vectors: the refined pairs and WARM_EXTRA more Ritz vectors of the final basis, orthonormal, and
    # column j is the Ritz vector of singular_values[j] (||W v_j|| = s_j up to float64 rounding of a Ritz pair)
    W, _, _ = _planted(600, 500, [3.0, 2.2], seed=3)
    analysis, state = analyze(W, config=EngineConfig(k=16))
    s, V = analysis.record(), state.warm
    assert V.shape[1] >= s["outliers"] + EDGE_WINDOW + WARM_EXTRA
    torch.testing.assert_close(V.T @ V, torch.eye(V.shape[1], dtype=V.dtype), atol=1e-10, rtol=0)
    k = min(V.shape[1], len(s["singular_values"]))
    torch.testing.assert_close(torch.linalg.vector_norm(W @ V[:, :k], dim=0), torch.tensor(s["singular_values"][:k], dtype=F64),
                               rtol=1e-10, atol=0)


def test_full_spectrum():
    W = _noise(50, 80, 0)
    torch.testing.assert_close(singular_values_full(W), torch.linalg.svdvals(W))
    torch.testing.assert_close(singular_values_full(W.T), torch.linalg.svdvals(W))


def test_outliers_scale_invariance_and_permutation():
    W, _, _ = _planted(400, 500, [3.0], seed=2)
    s1 = _rec(W, k=6)
    s2 = _rec(2.5 * W, k=6)
    perm = torch.randperm(400, generator=_gen(0))
    s3 = _rec(W[perm], k=6)
    assert s1["outliers"] == s2["outliers"] == s3["outliers"] == 1
    assert s2["outlier_values"][0] == pytest.approx(2.5 * s1["outlier_values"][0], rel=1e-6)
    assert s2["noise_scale"] == pytest.approx(2.5 * s1["noise_scale"], rel=1e-9)
    assert s3["outlier_values"][0] == pytest.approx(s1["outlier_values"][0], rel=1e-6)


def test_grows_k_until_bulk():
    thetas = [4.0, 3.6, 3.2, 2.8, 2.4, 2.0]
    W, _, _ = _planted(500, 500, thetas, seed=3)
    s = _rec(W, k=2)
    assert s["outliers"] == 6 and len(s["singular_values"]) >= 7
    assert s["top_bulk_value"] < s["cut"]


def test_detect_outliers_falls_back_to_marchenko_pastur_with_too_few_values():
    # three values cannot carry an edge fit: the MP edge at the fitted noise scale is used (s_hat = 1 here)
    out = detect_outliers([5.0, 2.015, 2.005], N=1000, d=1000, frobenius_sq=1025.0)
    assert out.method == "marchenko_pastur" and out.count == 1
    assert out.bulk_edge == pytest.approx(2.0 * out.noise_scale) and out.bulk_edge_theory == mp_bulk_edge(1.0)


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_edge_fit_recovers_a_planted_square_root_edge(scale):
    # values exactly on the classical locations E - kappa (j - 1/2)^(2/3): edge and scale come back exactly
    kappa = 0.02 * scale
    values = [2.0 * scale - kappa * (j + 0.5) ** (2 / 3) for j in range(40)]
    fit = fit_soft_edge(values[:12])
    assert fit.edge == pytest.approx(2.0 * scale, rel=1e-12)
    assert fit.scale == pytest.approx(kappa / (1.5 * math.pi) ** (2 / 3), rel=1e-12) and fit.error < 1e-12


def test_detect_outliers_scales_with_w():
    # W -> kW scales values, edge, cut and margin by k and leaves the count and status unchanged
    W, _, _ = _planted(500, 400, [3.0, 1.6], seed=2)
    values = torch.linalg.svdvals(W)[:60]
    fro = float(W.square().sum())
    one = detect_outliers(values, N=500, d=400, frobenius_sq=fro)
    three = detect_outliers(3 * values, N=500, d=400, frobenius_sq=9 * fro)
    assert (one.count, one.status) == (three.count, three.status)
    assert three.cut == pytest.approx(3 * one.cut) and three.bulk_edge == pytest.approx(3 * one.bulk_edge)


def test_deflated_count_is_total_or_one_less():
    # interlacing: s_{i+1}(W) <= s_i((I - a a^T) W) <= s_i(W)
    g = _gen(5)
    N, d = 400, 300
    a = torch.randn(N, generator=g, dtype=F64) / N**0.5
    _, Q = hadamard_power_basis(a, 1)
    V = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=F64))[0]
    W = _noise(N, d, 6) + 4.0 * torch.outer(Q[:, 0], V[:, 0]) + 2.5 * torch.outer(Q[:, 1], V[:, 1])
    s = _rec(W, TheoryInputs(a=a), k=8)
    assert s["outliers"] == 2 and s["outliers_deflated"] == 1 == _deflated_count_f64(W, a)


def test_order_decomposition_noiseless_exact():
    g = _gen(11)
    N, d, K = 300, 50, 3
    a = torch.randn(N, generator=g, dtype=F64) / N**0.5
    rho = torch.randn(K + 1, d, generator=g, dtype=F64)
    dW = sum(torch.outer(a ** (k + 1), rho[k]) for k in range(K + 1))
    W_prev = _noise(N, d, 12)
    B = torch.linalg.qr(rho[:2].T)[0]  # (d, 2), first column along rho_0
    dec = order_decomposition(W_prev + dW, a, W_prev=W_prev, max_order=K, B=B)
    torch.testing.assert_close(dec.rho, rho, rtol=1e-6, atol=1e-6 * float(rho.abs().max()))
    strengths = torch.stack([rho[k].norm() * (a ** (k + 1)).norm() for k in range(K + 1)])
    torch.testing.assert_close(dec.strengths, strengths, rtol=1e-6, atol=0)
    assert float(dec.alignment[0, 0]) == pytest.approx(1.0)


def test_alignments():
    W, U, V = _planted(500, 400, [3.0, 2.5], seed=5)
    B = torch.linalg.qr(torch.cat([V, torch.randn(400, 1, generator=_gen(1), dtype=F64)], 1))[0]
    s = _rec(W, TheoryInputs(B=B), k=6)
    al = torch.tensor(s["alignment"])
    assert al.shape == (2, 3)
    # BGN right overlap at theta = 3, c = 1.25 is ~0.85; the random direction sees ~1/d
    assert float(al[0, 0]) > 0.7 and float(al[1, 1]) > 0.6 and float(al[:, 2].max()) < 0.05
    assert s["captured_energy_baseline"] == 2 / 400
    direct = outlier_alignment(V[:, :1], B)
    assert float(direct.overlaps[0, 0]) == pytest.approx(1.0)


def test_snapshot_with_a_deflation_and_predictions():
    g = _gen(21)
    N, d = 600, 600
    W0 = _noise(N, d, 22)
    a = torch.randn(N, generator=g, dtype=F64) / N**0.5
    _, Q = hadamard_power_basis(a, 2)
    V = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=F64))[0]
    W1 = W0 + 4.0 * torch.outer(Q[:, 0], V[:, 0])
    W2 = W1 + 2.0 * torch.outer(Q[:, 1], V[:, 1])
    s = _rec(W2, TheoryInputs(a=a, B=V, alphas=[0.3, 0.25]), _references(a, 2, 2, W1, W0), step=2, max_order=2, k=8)
    assert s["outliers"] == 2 and s["outliers_deflated"] == 1
    assert s["predicted_outliers"] == 2 and s["predicted_outliers_deflated"] == 1
    assert s["predicted_outliers_finite_n"] == 2
    # left vectors: first outlier along a, second along the GS direction of a^2
    assert s["left_alignment"][0][0] > 0.8 and s["left_alignment"][1][1] > 0.6
    # order-1 strength ~2 (+ O(1) projected noise of norm ~sqrt(1)/... ), order 0 ~ noise only
    assert s["order_strengths"][1] == pytest.approx(2.0, abs=0.15)
    assert s["order_alignment"][1][1] > 0.9
    json.dumps(s)


def _deflated_count_f64(W, a, fro_sq=None):
    a_hat = (a / a.norm())[:, None]
    Wd = W - a_hat @ (a_hat.T @ W)
    return detect_outliers(
        singular_values_full(Wd)[:40], N=W.shape[0], d=W.shape[1],
        frobenius_sq=float(Wd.square().sum()),
    ).count


def test_warm_deflated_and_cached_products_match_cold():
    # step 1 plants an outlier along a (gone after deflation), step 2 adds one along the
    # GS direction of a^2 (survives deflation); the warm analysis of W2 (both warm starts,
    # cached W1^T Q_a and W0^T Q_a) must equal the cold one and the float64 references.
    g = _gen(31)
    N, d = 700, 500
    W0 = _noise(N, d, 32)
    a = torch.randn(N, generator=g, dtype=F64) / N**0.5
    _, Q = hadamard_power_basis(a, 2)
    V = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=F64))[0]
    W1 = W0 + 4.0 * torch.outer(Q[:, 0], V[:, 0]) + 0.02 * _noise(N, d, 33)
    W2 = W1 + 2.5 * torch.outer(Q[:, 1], V[:, 1]) + 0.02 * _noise(N, d, 34)
    theory, config = TheoryInputs(a=a), EngineConfig(max_order=2, k=8)
    _, state = analyze(W0, theory, config, step=0)
    _, state = analyze(W1, theory, config, state, step=1)
    assert state.products.shape == (d, 3) and state.products_step == 1
    cold = _rec(W2, theory, _references(a, 2, 2, W1, W0), step=2, max_order=2, k=8)
    warm = analyze(W2, theory, config, state, step=2)[0].record()
    exact = singular_values_full(W2)
    assert warm["outliers"] == cold["outliers"] == 2
    assert warm["outliers_deflated"] == cold["outliers_deflated"] == _deflated_count_f64(W2, a) == 1
    for s in (warm, cold):
        for v, e in zip(s["outlier_values"], exact):
            assert abs(v - float(e)) / float(e) < 1e-4
    torch.testing.assert_close(
        torch.tensor(warm["order_strengths"]), torch.tensor(cold["order_strengths"]), rtol=1e-9, atol=1e-12
    )
    assert warm["predicted_outliers_finite_n"] == cold["predicted_outliers_finite_n"]
    json.dumps(warm)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_warm_start_finds_new_near_edge_outlier(dtype):
    # the previous snapshot is pure noise (its warm start knows nothing of the new direction);
    # a spike whose BGN location clears the cut by a few margins (~4 % above the edge at N=500)
    # must be found by the warm-started analysis, and must survive deflating a (it is
    # orthogonal to a), with its value within 1e-4 of float64.
    N = d = 500
    g = _gen(41)
    W_prev = _noise(N, d, 42)
    a = torch.randn(N, generator=g, dtype=F64)
    u = torch.randn(N, generator=g, dtype=F64)
    u -= (u @ a) / (a @ a) * a
    u /= u.norm()
    v = torch.randn(d, generator=g, dtype=F64)
    v /= v.norm()
    prev, state = analyze(W_prev.to(dtype), TheoryInputs(a=a.to(dtype)), EngineConfig(k=8))
    assert prev.outliers.count == 0
    theta = 1.5  # BGN location (1 + theta^2) / theta = 2.17 at c = 1; cut ~2.06
    W = (W_prev + theta * torch.outer(u, v)).to(dtype)
    s = _rec(W, TheoryInputs(a=a.to(dtype)), EngineState(warm=state.warm), k=8)
    exact = singular_values_full(W)
    assert s["outliers"] == 1 and s["outliers_deflated"] == 1
    assert s["outlier_margins"][0] > 2.0
    assert abs(s["outlier_values"][0] - float(exact[0])) / float(exact[0]) < 1e-4


def test_snapshot_outside_theory_note():
    s = _rec(_noise(100, 100, 0), TheoryInputs(alphas=[0.6, 0.2]), k=4)
    assert s["predicted_outliers"] is None and "outside the theory" in s["theory_note"]
    s3 = _rec(_noise(100, 100, 0), TheoryInputs(alphas=[0.1, 0.2, 0.3]), k=4)
    # past two steps: the stated extension, said to be one (0.2 / 0.4 -> 0, then 0.3 / 0.3 = 1: Theta(1), borderline)
    assert s3["predicted_outliers"] == 2 and "extension of the two-step law" in s3["theory_note"]


def test_left_alignment_shape():
    a = torch.randn(30, generator=_gen(0), dtype=F64)
    U = torch.linalg.qr(torch.randn(30, 2, generator=_gen(1), dtype=F64))[0]
    assert left_alignment(U, a, 3).shape == (2, 4)


@pytest.mark.parametrize(
    "W, theory, state, match",
    [
        (torch.ones(3), None, None, "2-D"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), None, None, "NaN"),
        (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), None, None, "Inf"),
        (torch.ones(4, 5), TheoryInputs(a=torch.ones(5)), None, "`a`"),
        (torch.ones(4, 5), TheoryInputs(B=torch.ones(4, 1)), None, "`B`"),
        (torch.ones(4, 5), TheoryInputs(a_kind="uniform"), None, "`a_kind`"),
        (torch.ones(4, 5), TheoryInputs(a=torch.ones(4)), EngineState(products=torch.ones(5, 4)), "`products`"),
        (torch.ones(4, 5, dtype=torch.int64), None, None, "float32 or float64"),
    ],
)
def test_bad_input(W, theory, state, match):
    with pytest.raises(ValueError, match=match):
        analyze(W, theory, EngineConfig(k=2, max_order=1), state)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(k=0), "`k`"), (dict(max_order=-1), "`max_order`"), (dict(quantile=0.1), "`quantile`"),
     (dict(tol=0.0), "`tol`"), (dict(outlier_rule="nosuch"), "edge_scan"), (dict(block_size=True), "`block_size`"),
     (dict(threads=0), "`threads`"), (dict(threads=1.5), "`threads`"), (dict(threads=True), "`threads`")],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EngineConfig(**kwargs)


@pytest.fixture
def _two_threads():
    """The caller (training) on two intra-op threads, whatever the suite's one-thread setting; restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_engine_bounds_its_threads_and_restores_the_callers(_two_threads, monkeypatch):
    """``EngineConfig.threads`` holds inside the analysis and ``reference_products``; the caller's count comes back
    after them (issue 20); ``None`` leaves the caller's count in place."""
    seen = []
    frobenius_sq = engine.frobenius_sq
    monkeypatch.setattr(engine, "frobenius_sq", lambda W: seen.append(torch.get_num_threads()) or frobenius_sq(W))
    W, a = _noise(60, 40, 0), torch.randn(60, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    analyze(W, config=EngineConfig(k=4))
    analyze(W, config=EngineConfig(k=4, threads=None))
    assert seen == [1, 2] and torch.get_num_threads() == 2
    reference_products(W, a, 2, threads=1)
    assert torch.get_num_threads() == 2
    assert EngineConfig().threads == 1


def test_engine_restores_the_callers_threads_on_an_error(_two_threads, monkeypatch):
    def fail(*args, **kwargs):
        assert torch.get_num_threads() == 1
        raise RuntimeError("stage failed")

    monkeypatch.setattr(engine, "top_spectrum", fail)
    with pytest.raises(RuntimeError, match="stage failed"):
        analyze(_noise(30, 20, 0), config=EngineConfig(k=4))
    assert torch.get_num_threads() == 2


def test_thread_bound_never_raises_the_callers_count():
    """A caller already on fewer threads than the bound keeps its count (the bound only lowers)."""
    from spikelearn.functional._measure import bounded_threads

    assert torch.get_num_threads() == 1  # the suite's setting (tests/conftest.py)
    with bounded_threads(4, torch.device("cpu")):
        assert torch.get_num_threads() == 1


def test_k_is_capped_at_the_rank():
    W = _noise(20, 30, 0)
    assert len(_rec(W, k=64)["singular_values"]) == 20


def test_bad_input_topk():
    with pytest.raises(ValueError, match="`k`"):
        top_singular_triplets(torch.ones(3, 4), 4)
    with pytest.raises(ValueError, match="NaN"):
        singular_values_full(torch.tensor([[float("nan")]]))


@pytest.mark.parametrize("n_planted", [17, 40])
def test_more_outliers_than_the_block_are_all_found(n_planted):
    # regression: the stopping rule indexed past its Ritz block once every checked value was above the cut
    # (40 > k = 32: the first recount fills the whole refined block)
    g = torch.Generator().manual_seed(3)
    N = d = 400
    X = torch.randn(N, d, generator=g, dtype=torch.float64) / d**0.5
    U, _ = torch.linalg.qr(torch.randn(N, n_planted, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(d, n_planted, generator=g, dtype=torch.float64))
    strengths = torch.linspace(4.0, 8.0, n_planted, dtype=torch.float64)  # all far above the BBP threshold 1
    summary = _rec(X + U @ torch.diag(strengths) @ V.T, block_size=16)
    assert summary["outliers"] == n_planted
