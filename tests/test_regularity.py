"""Issue 19: heavy-tailed and irregular bulks (SPEC §4 "Irregular bulks"), with truth from outside the engine.

Bulks whose tails are known by construction:

* ``t2.5``, ``t3``: iid Student-t entries with ``ν`` degrees of freedom (tail index ``ν < 4``: infinite fourth moment),
  scaled to variance ``1/d``;
* ``pareto``: a variance profile over the rows, ``D Z/√(d E[D²])`` with ``D_i`` iid Pareto of tail index 3 (a few rows
  carry most of the energy: their singular vectors sit on one row);
* ``gaussian``: iid ``N(0, 1/d)``, the regular edge of the same size.

Planted spikes are delocalised rank-one terms ``θ u vᵀ`` (``u``, ``v`` uniform on their spheres) with ``θ`` 1.5x the
largest singular value of the spike-free draw (``torch.linalg.svdvals``, not the engine); a spike is found when a
counted outlier's left vector has overlap ``⟨û, u⟩² > 1/2`` with it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikelearn.functional.engine import analyze
from spikelearn.functional.inputs import EngineConfig
from spikelearn.functional.outliers import detect_outliers
from spikelearn.functional.regularity import (
    LOCALISED,
    Regularity,
    counted_outliers,
    edge_residual,
    hill_tail_index,
    inverse_participation_ratio,
    localisation,
    tail_alpha,
)

KINDS = ("t2.5", "t3", "pareto")


def heavy_bulk(kind: str, N: int, d: int, seed: int) -> torch.Tensor:
    """A spike-free ``(N, d)`` float64 matrix of the given kind, entries of variance ``1/d`` on average."""
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(N, d, generator=g, dtype=torch.float64)
    if kind == "gaussian":
        return Z / math.sqrt(d)
    if kind.startswith("t"):
        nu = float(kind[1:])
        # chi^2_nu as a sum of squares needs an integer nu: use a Gamma(nu/2, 2) draw from numpy's seeded generator
        chi2 = np.random.default_rng(seed).gamma(nu / 2.0, 2.0, size=(N, d))
        T = Z / torch.from_numpy(np.sqrt(chi2 / nu))
        return T / math.sqrt(nu / (nu - 2.0) * d)
    if kind == "pareto":
        zeta = 3.0
        D = torch.rand(N, generator=g, dtype=torch.float64) ** (-1.0 / zeta)  # P(D > x) = x^-3, x >= 1
        return D[:, None] * Z / math.sqrt(d * zeta / (zeta - 2.0))  # E[D^2] = zeta / (zeta - 2)
    raise ValueError(kind)


def _unit(n: int, g: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, generator=g, dtype=torch.float64)
    return x / x.norm()


def _clear(analysis) -> bool:
    return "clear" in analysis.outliers.status


def _found(analysis, u: torch.Tensor) -> bool:
    out, sp = analysis.outliers, analysis.spectrum
    if out.count == 0:
        return False
    overlaps = (sp.left[:, : out.count].double().T @ u).square()
    return bool((overlaps > 0.5).any())


def draw(kind: str, N: int, seed: int) -> tuple[bool, bool]:
    """(spike-free draw reports a clear outlier, planted spike at 1.5x its top value is found), float32 engine."""
    X = heavy_bulk(kind, N, N, seed)
    top = float(torch.linalg.svdvals(X)[0])
    g = torch.Generator().manual_seed(10_000 + seed)
    u, v = _unit(N, g), _unit(N, g)
    free = analyze(X.float(), config=EngineConfig(k=16))[0]
    spiked = analyze((X + 1.5 * top * torch.outer(u, v)).float(), config=EngineConfig(k=16))[0]
    return _clear(free), _found(spiked, u)


def rates(kind: str, N: int, draws: int) -> tuple[float, float]:
    """(false-positive rate, detection rate) over ``draws`` seeds."""
    fp = found = 0
    for seed in range(draws):
        a, b = draw(kind, N, seed)
        fp, found = fp + a, found + b
    return fp / draws, found / draws


# ------------------------------------------------------------------------------------------------ the contract
@pytest.mark.parametrize("kind", KINDS)
def test_heavy_tailed_bulks_fast_tier(kind):
    # 12 draws at N = 300: no draw reports a clear outlier, every planted spike is found (the slow tier checks the
    # contract's rates on 100 draws at two sizes)
    fp, found = rates(kind, 300, 12)
    assert fp == 0.0 and found == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("N", [400, 800])
@pytest.mark.parametrize("kind", KINDS)
def test_heavy_tailed_bulks_contract(kind, N):
    # issue 19's contract: <= 2 % of 100 spike-free draws report a clear outlier (today's main: 4-7 "clear" outliers
    # per draw at t2.5, 800 x 800), and a delocalised spike at 1.5x the largest spike-free value is found in >= 95 %
    fp, found = rates(kind, N, 100)
    assert fp <= 0.02, fp
    assert found >= 0.95, found


def test_heavy_tailed_status_and_record():
    # a t2.5 draw: the edge is flagged, its localised candidates are dropped and said so; the record carries it
    an = analyze(heavy_bulk("t2.5", 400, 400, 1).float(), config=EngineConfig(k=16))[0]
    reg = an.regularity
    assert reg.edge_regular is False and reg.status == "heavy_tailed"
    assert reg.candidates >= 1 and an.outliers.count == 0 and all(reg.localised)
    rec = an.record(step=0, param="W")
    assert rec["edge_regular"] is False and rec["count_status"] == "heavy_tailed" and rec["outliers"] == 0
    assert rec["outlier_candidates"] == reg.candidates and len(rec["outlier_localisation"]) == reg.candidates
    assert "heavy-tailed bulk" in rec["theory_note"] and 1.0 < rec["tail_alpha"] < 6.0


@pytest.mark.parametrize("kind", ["gaussian"])
@pytest.mark.parametrize("seed", range(4))
def test_regular_bulks_are_regular_and_counted_as_before(kind, seed):
    # a Gaussian bulk with a planted spike: regular, every candidate counted, delocalised (l ~ 1)
    N = 300
    g = torch.Generator().manual_seed(seed)
    u, v = _unit(N, g), _unit(N, g)
    W = heavy_bulk(kind, N, N, seed) + 3.0 * torch.outer(u, v)
    an = analyze(W.float(), config=EngineConfig(k=16))[0]
    reg = an.regularity
    assert reg.edge_regular is True and reg.status == "regular" and reg.candidates == an.outliers.count == 1
    assert reg.localisation[0] < 1.5 and an.record()["theory_note"] is None
    assert reg.tail_alpha > 3.0  # one spike over a square-root edge: still far from a heavy tail


# ------------------------------------------------------------------------------------------------ alpha
def _planted_pareto(n: int, zeta: float, seed: int) -> tuple[torch.Tensor, list[float]]:
    """``U diag(s) Vᵀ`` with ``s`` iid Pareto (``P(s > x) = x^-zeta``), ``U``, ``V`` Haar: tail index known exactly."""
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, generator=g, dtype=torch.float64) ** (-1.0 / zeta)
    s = s.sort(descending=True).values
    U = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    return (U * s) @ V.T, s.tolist()


def _csn_alpha(eigenvalues: list[float], k: int) -> float:
    """Clauset-Shalizi-Newman's continuous power-law MLE (their eq. 3.1) on the top ``k`` eigenvalues, x_min the next."""
    lam = np.sort(np.asarray(eigenvalues))[::-1]
    return 1.0 + k / float(np.sum(np.log(lam[:k] / lam[k])))


@pytest.mark.parametrize("zeta", [2.0, 3.0, 4.0])
def test_tail_alpha_recovers_a_planted_tail_exponent(zeta):
    # truth by construction: singular values iid Pareto(zeta), so weightwatcher's eigenvalue exponent is 1 + zeta/2.
    # Each draw, the engine's alpha equals the CSN MLE computed here in numpy on the planted eigenvalues (2 %: the engine resolves values to a fraction of the
    # fitted edge's scale, not to machine precision: up to 0.6 % off at s_17 on these widely spaced values, which moves
    # alpha by up to 1 %, against the estimator's own 25 % standard error); over
    # 40 draws the mean of 1/zeta_hat (an average of k = 16 Exp(zeta) variables: unbiased, 4 % standard error of the
    # mean) is within 12 % (3 standard errors) of 1/zeta
    inverse = []
    for seed in range(40):
        W, s = _planted_pareto(200, zeta, seed)
        reg = analyze(W, config=EngineConfig(k=32))[0].regularity
        assert reg.tail_k == 16
        assert reg.tail_alpha == pytest.approx(_csn_alpha([x * x for x in s], 16), rel=2e-2)
        inverse.append(1.0 / (2.0 * (reg.tail_alpha - 1.0)))
    assert float(np.mean(inverse)) == pytest.approx(1.0 / zeta, rel=0.12)


def test_hill_tail_index_on_exact_pareto_quantiles():
    # the top values at exact Pareto quantiles s_i = (i / n)^(-1/zeta): Hill's 1/zeta_hat is, in closed form,
    # (1/zeta) (1/k) sum_i log((k + 1)/i)
    k, zeta = 16, 2.5
    s = [(i / 1000.0) ** (-1.0 / zeta) for i in range(1, k + 2)]
    expected = zeta * k / sum(math.log((k + 1) / i) for i in range(1, k + 1))
    assert hill_tail_index(s, k) == pytest.approx(expected, rel=1e-12)
    assert tail_alpha(s, k) == pytest.approx(1 + expected / 2, rel=1e-12)
    assert math.isnan(hill_tail_index([1.0, 1.0, 1.0])) and math.isnan(hill_tail_index([2.0, 1.0]))


# ------------------------------------------------------------------------------------------------ pieces
def test_inverse_participation_ratio_delocalised_and_localised():
    # a Gaussian unit vector in R^n has IPR ~ 3/n (E = 3/(n + 2)); a basis vector has IPR 1
    n = 2000
    x = torch.randn(n, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ipr = inverse_participation_ratio(x)
    assert float(ipr.mean()) * n == pytest.approx(3.0, rel=0.05)
    e = torch.zeros(n, 1, dtype=torch.float64)
    e[7] = 5.0
    assert inverse_participation_ratio(e).tolist() == [1.0]
    ell, localised = localisation(torch.cat([x[:, :1], e], 1), torch.cat([x[:, 1:2], x[:, 2:3]], 1))
    assert ell[0] < 1.5 and ell[1] == pytest.approx(n / 3) and localised == [False, True]
    # spread over 50 coordinates (IPR 0.02 = 13 times 3/n): not a few coordinates
    f = torch.zeros(n, 1, dtype=torch.float64)
    f[:50] = 1.0
    assert localisation(f, x[:, :1])[1] == [False]


def test_small_sides_are_not_judged():
    # a 10-dimensional side cannot tell 3/n from O(1): its localisation is left out
    e = torch.zeros(10, 1, dtype=torch.float64)
    e[0] = 1.0
    ell, localised = localisation(e, torch.randn(500, 1, dtype=torch.float64))
    assert ell[0] < LOCALISED and localised == [False]


def test_edge_residual_is_zero_on_the_law_and_positive_off_it():
    law = [2.0 - 0.01 * (j + 0.5) ** (2 / 3) for j in range(12)]
    assert edge_residual(law) == pytest.approx(0.0, abs=1e-9)
    power = [float(j + 1) ** (-1 / 3) for j in range(12)]  # a power-law tail is not a square-root edge
    assert edge_residual(power) > 0.1
    assert math.isnan(edge_residual([1.0, 0.5]))


def test_counted_outliers_keep_the_top_run_of_delocalised_candidates():
    j = [(i + 0.5) ** (2 / 3) for i in range(20)]
    out = detect_outliers([5.0, 4.0, 3.0] + [2.0 - 0.01 * t for t in j], N=1000, d=1000, frobenius_sq=1000.0)
    assert out.count == 3

    def reg(regular, localised):
        return Regularity(regular, 2.0, 16, 0.5, 3, [1.0] * 3, localised, "regular" if regular else "heavy_tailed")

    assert counted_outliers(out, reg(True, [True, True, True])) is out  # a regular edge counts every candidate
    assert counted_outliers(out, reg(False, [False, False, False])) is out
    kept = counted_outliers(out, reg(False, [False, True, False]))
    assert (kept.count, kept.values, kept.top_bulk_value) == (1, [5.0], 4.0)
    assert counted_outliers(out, reg(False, [True, False, False])).count == 0


# ------------------------------------------------------------------------------------------------ where it shows
def test_alpha_and_the_flag_reach_tensorboard_tags_and_the_report(tmp_path):
    import json

    from spikelearn.functional.record import charts, final_scalars, scalars
    from spikelearn.report import build_report

    heavy = analyze(heavy_bulk("t2.5", 300, 300, 0).float(), config=EngineConfig(k=16))[0].record(step=1, param="W")
    regular = analyze(heavy_bulk("gaussian", 300, 300, 0).float(), config=EngineConfig(k=16))[0].record(step=0,
                                                                                                        param="W")
    tags = scalars(heavy)
    assert tags["spectrum/W/edge_regular"] == 0.0 and tags["spectrum/W/tail_alpha"] == heavy["tail_alpha"]
    assert scalars(regular)["spectrum/W/edge_regular"] == 1.0
    assert final_scalars(heavy)["final/W/tail_alpha"] == heavy["tail_alpha"]
    assert any("tail_alpha" in line for lines in charts("W").values() for line in lines)
    (tmp_path / "spectra.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (regular, heavy)))
    page = build_report(tmp_path).read_text()
    assert "Tail exponent and edge regularity" in page and "heavy-tailed bulk" in page
    assert f"tail α {heavy['tail_alpha']:.2f}" in page


def test_degenerate_and_zero_weights_say_so():
    # no bulk, no regularity question: count_status "degenerate", edge_regular null, alpha nan (null) for zeros
    zero = analyze(torch.zeros(128, 96), config=EngineConfig(k=8))[0]
    assert (zero.regularity.status, zero.regularity.edge_regular, zero.outliers.count) == ("degenerate", None, 0)
    rec = zero.record()
    assert rec["count_status"] == "degenerate" and rec["edge_regular"] is None and rec["tail_alpha"] is None
    ones = analyze(torch.ones(128, 64), config=EngineConfig(k=8))[0]
    assert ones.regularity.status == "degenerate" and ones.outliers.count == 0


def test_public_names():
    import spikelearn.functional as F

    assert {"edge_regularity", "Regularity", "tail_alpha", "counted_outliers"} <= set(F.__all__)
    assert len(F.__all__) == len(set(F.__all__))
