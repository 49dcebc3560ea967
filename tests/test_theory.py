"""Tests for spikelearn.functional.theory (SPEC §2, §4)."""

import math

import pytest
import torch

from spikelearn.functional import theory
from spikelearn.functional.theory import (
    EXTENSION_NOTE,
    extended_outlier_count,
    hadamard_power_basis,
    learnable_directions,
    predicted_outlier_count,
)


def test_all_unique():
    assert len(theory.__all__) == len(set(theory.__all__))


# (alpha1, alpha2) -> (total, deflated, borderline); ratio = alpha2 / (1/2 - alpha1)
TABLE = [
    ((0.0, 0.1), 1, 0, False),  # ratio 0.2
    ((0.3, 0.25), 2, 1, False),  # ratio 1.25
    ((0.3, 0.45), 3, 2, False),  # ratio 2.25
    ((0.4, 0.35), 4, 3, False),  # ratio 3.5
    ((0.25, 0.25), 2, 1, True),  # integer ratio 1
    ((0.3, 0.4), 3, 2, True),  # integer ratio 2
    ((0.375, 0.375), 4, 3, True),  # integer ratio 3 (exact in binary)
    ((0.2, 0.0), 1, 0, False),
]


@pytest.mark.parametrize("alphas, total, deflated, borderline", TABLE)
def test_predicted_counts_table(alphas, total, deflated, borderline):
    p = predicted_outlier_count(alphas)
    ratio = alphas[1] / (0.5 - alphas[0])
    assert p.total == 1 + math.floor(ratio + 1e-9) == total
    assert p.deflated == deflated and p.borderline is borderline and p.within_theory
    assert ("integer ratio" in p.note) is borderline


def test_predicted_counts_t0_t1_t3():
    assert predicted_outlier_count([])[:2] == (0, 0)
    assert predicted_outlier_count([0.3])[:2] == (1, 0)
    p = predicted_outlier_count([0.3, 0.2, 0.1])
    # past two steps: the stated extension, marked as such (step 2: 0.2 / 0.2 = 1; step 3: 0.1 / 0.2 -> 0)
    assert (p.total, p.deflated, p.extension, p.within_theory) == (2, 1, True, False)
    assert p.note.startswith(EXTENSION_NOTE)


@pytest.mark.parametrize(
    "alphas, expected",
    [([0.3, 0.45, 0.1], 1 + 2), ([0.3, 0.2, 0.45], 1 + 2), ([0.25, 0.25, 0.25, 0.25], 1 + 1),
     ([0.1, 0.1, 0.4, 0.1], 1 + 1), ([0.2, 0.3, 0.2, 0.3], 1 + 1)],
)
def test_extension_counts_the_largest_order_any_step_made_positive(alphas, expected):
    # order k of step s has exponent alpha_s - k (1/2 - max_{r<s} alpha_r): the count is 1 + max_s floor(ratio_s)
    ratios = [alphas[s] / (0.5 - max(alphas[:s])) for s in range(1, len(alphas))]
    assert extended_outlier_count(alphas).total == expected == 1 + max(int(r + 1e-9) for r in ratios)


@pytest.mark.parametrize("alphas", [(0.5, 0.2), (0.2, 0.6), (-0.1, 0.2)])
def test_alpha_outside_warns(alphas):
    with pytest.warns(UserWarning, match="outside the theory"):
        p = predicted_outlier_count(alphas)
    assert not p.within_theory
    if alphas[0] >= 0.5:
        assert p.total is None


@pytest.mark.parametrize(
    "mu, gapped",
    [
        ([0.0, 0.6, 0.0, -0.5, 0.0], True),  # odd tanh: mu_2 = 0 gaps order 1
        ([0.4, 0.5, 0.4, 0.0, -0.1], True),  # relu-like: mu_3 = 0 gaps order 2
        ([0.4, 0.7, -0.3, -0.2, 0.3], False),  # shifted tanh: all non-zero
    ],
)
def test_gapped_activation(mu, gapped):
    p = predicted_outlier_count([0.3, 0.45], activation_coefficients=mu)  # orders 1, 2
    assert p.within_theory is not gapped
    assert ("mu_(k+1) = 0" in p.note) is gapped


@pytest.mark.parametrize("a_kind, total, deflated", [("gaussian", 4, 3), ("rademacher", 2, 1), ("constant", 1, 0)])
def test_a_kinds(a_kind, total, deflated):
    p = predicted_outlier_count([0.4, 0.35], a_kind=a_kind)
    assert (p.total, p.deflated) == (total, deflated)


def test_learnable_independent_and_reused():
    ind = learnable_directions(0.2, 0.35, reused=False, information_exponents=[1, 2, 3])
    assert ind.learnable == (True, False, False)
    stair = learnable_directions(
        0.2, 0.35, reused=False, information_exponents=[1, 2], staircase=[False, True]
    )
    assert stair.learnable == (True, True) and "staircase" in stair.note
    # 1/2 - alpha1 = 0.3: p*=2 needs alpha2 > 0.3, p*=3 needs > 0.6
    reu = learnable_directions(0.2, 0.35, reused=True, reuse_exponents=[1, 2, 3, math.inf])
    assert reu.learnable == (True, True, False, False)
    eq = learnable_directions(0.25, 0.25, reused=True, reuse_exponents=[2])
    assert eq.learnable == (False,) and eq.borderline == (True,)


def test_hadamard_basis_inner_products():
    # <a_hat_j, a_hat_k> -> (j+k+1)!! / sqrt((2j+1)!! (2k+1)!!) for Gaussian a (SPEC §2)
    N = 200000
    a = torch.randn(N, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    A, Q = hadamard_power_basis(a, 2)
    An = A / A.norm(dim=0)
    # j=0, k=2 (powers 1 and 3): 3!!/sqrt(1!! 5!!) = 3/sqrt(15); sampling error O(N^-1/2)*const
    assert float(An[:, 0] @ An[:, 2]) == pytest.approx(3 / math.sqrt(15), abs=0.02)
    torch.testing.assert_close(Q.T @ Q, torch.eye(3, dtype=torch.float64))


def test_errors():
    with pytest.raises(ValueError, match="a_kind"):
        predicted_outlier_count([0.1], a_kind="uniform")
    with pytest.raises(ValueError, match="alphas"):
        predicted_outlier_count(["x"])
    with pytest.raises(ValueError, match="alpha1"):
        learnable_directions(0.6, 0.1, reused=True, reuse_exponents=[1])
    with pytest.raises(ValueError, match="information_exponents"):
        learnable_directions(0.1, 0.1, reused=False)
    with pytest.raises(ValueError, match="max_order"):
        hadamard_power_basis(torch.ones(3), -1)


def test_learnable_directions_accepts_infinite_information_exponent():
    # the staircase's beta_2 has IE = inf (no Hermite correlation) and p* = 2
    from spikelearn.functional import make_target

    target = make_target("staircase")
    independent = learnable_directions(0.3, 0.45, reused=False, information_exponents=target.information_exponents)
    reused = learnable_directions(0.3, 0.45, reused=True, reuse_exponents=target.reuse_exponents)
    assert independent.learnable == (True, False) and reused.learnable == (True, True)
