"""Built-in targets: normalisation, the stated exponents (SPEC §1) and the bounded counterparts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from spikelearn.functional import TARGET_NAMES, make_target, target_directions

INF = math.inf
# (information exponents, reuse exponents) per direction, from the definitions:
#   he_k: IE = k; p* = 1 for k = 1, 3 for odd k >= 3 (E[z y] = 0, y^2 even, E[z y^3] != 0), inf for even links.
#   (he2+he3)/sqrt2: IE 2; E[z y^2] = E[z he2 he3] != 0 -> p* = 2.
#   additive he1 + he2 + bounded_he3: per direction the component's exponents (z_j only enters through g_j).
#   staircase (z1 + z1 z2)/sqrt2: beta_1 (1, 1); beta_2: no Hermite correlation (IE inf), E[z2 y^2] = 1 -> p* = 2.
EXPECTED = {
    **{f"he{k}": ((float(k),), (1.0 if k == 1 else 3.0 if k % 2 else INF,)) for k in range(1, 7)},
    **{f"bounded_he{k}": ((float(k),), (1.0 if k == 1 else 3.0 if k % 2 else INF,)) for k in range(1, 7)},
    "he2+he3": ((2.0,), (2.0,)),
    "additive": ((1.0, 2.0, 3.0), (1.0, INF, 3.0)),
    "staircase": ((1.0, INF), (1.0, 2.0)),
    "noise": ((), ()),
}


def test_every_builtin_has_expected_exponents_listed():
    assert set(EXPECTED) == set(TARGET_NAMES)


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_stated_exponents(name):
    target = make_target(name)
    assert (target.information_exponents, target.reuse_exponents) == EXPECTED[name]


def _moments_1d(target):
    link = lambda z: float(target.link(torch.tensor([[z]], dtype=torch.float64))[0])
    density = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    mean = integrate.quad(lambda z: link(z) * density(z), -30, 30, limit=400)[0]
    second = integrate.quad(lambda z: link(z) ** 2 * density(z), -30, 30, limit=400)[0]
    return mean, second


@pytest.mark.parametrize("name", [n for n in TARGET_NAMES if make_target(n).rank == 1])
def test_single_index_targets_are_normalised(name):
    # adaptive quadrature independent of the Gauss-Hermite rule used to normalise: agreement to 1e-8
    mean, second = _moments_1d(make_target(name))
    assert abs(mean) < 1e-8 and abs(second - 1.0) < 1e-8


@pytest.mark.parametrize("name", ["additive", "staircase"])
def test_multi_index_targets_are_normalised(name):
    target = make_target(name)
    z = torch.randn(400_000, target.rank, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = target.link(z)
    n = y.shape[0]
    # 5 standard errors of the sample mean and of the sample second moment (estimated from the sample)
    assert abs(float(y.mean())) < 5 * float(y.std()) / math.sqrt(n)
    assert abs(float((y**2).mean()) - 1.0) < 5 * float((y**2).std()) / math.sqrt(n)


@pytest.mark.parametrize("k", range(1, 7))
def test_bounded_counterparts_are_bounded(k):
    target = make_target(f"bounded_he{k}")
    z = torch.linspace(-50, 50, 20001, dtype=torch.float64)[:, None]
    assert float(target.link(z).abs().max()) < 10.0


def test_bounded_he3_is_the_spec_formula():
    z = torch.linspace(-4, 4, 41, dtype=torch.float64)
    spec = torch.sin(2 * z) - 2 * math.exp(-1.5) * torch.sin(z)
    spec = spec / spec.new_tensor(np.sqrt(integrate.quad(
        lambda t: (math.sin(2 * t) - 2 * math.exp(-1.5) * math.sin(t)) ** 2 * math.exp(-t * t / 2) / math.sqrt(2 * math.pi), -30, 30)[0]))
    torch.testing.assert_close(make_target("bounded_he3").link(z[:, None]), spec)


def test_bounded_he2_is_centred_cosine():
    z = torch.linspace(-4, 4, 41, dtype=torch.float64)
    # E cos z = e^{-1/2}, Var cos z = (1 + e^{-2})/2 - e^{-1}
    expected = (torch.cos(z) - math.exp(-0.5)) / math.sqrt((1 + math.exp(-2)) / 2 - math.exp(-1))
    torch.testing.assert_close(make_target("bounded_he2").link(z[:, None]), expected)


def test_staircase_formula():
    z = torch.tensor([[1.0, 2.0], [-0.5, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(make_target("staircase").link(z), (z[:, 0] + z[:, 0] * z[:, 1]) / math.sqrt(2))


def test_hermite_sum_is_normalised_sum():
    z = torch.linspace(-3, 3, 7, dtype=torch.float64)
    he2, he3 = (z**2 - 1) / math.sqrt(2), (z**3 - 3 * z) / math.sqrt(6)
    torch.testing.assert_close(make_target("he2+he3").link(z[:, None]), (he2 + he3) / math.sqrt(2))


def test_target_applies_link_to_projections():
    target, B = make_target("he2"), target_directions(6, 1, seed=3)
    X = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(target(X, B), ((X @ B)[:, 0] ** 2 - 1) / math.sqrt(2))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("d", "rank"), [(5, 1), (30, 3), (4, 4)])
def test_directions_are_orthonormal_and_seeded(d, rank, seed):
    B = target_directions(d, rank, seed)
    torch.testing.assert_close(B.T @ B, torch.eye(rank, dtype=B.dtype))
    assert torch.equal(B, target_directions(d, rank, seed))


def test_more_directions_than_dimensions_is_an_error():
    with pytest.raises(ValueError, match="rank <= d"):
        target_directions(2, 3, seed=0)


def test_unknown_target_lists_known_names():
    with pytest.raises(ValueError, match="staircase"):
        make_target("he7")


@pytest.mark.parametrize("components", [["he1", "nope"], [], ["he1"] * 5])
def test_bad_additive_components(components):
    with pytest.raises(ValueError, match="components"):
        make_target("additive", components)


def test_components_only_for_additive():
    with pytest.raises(ValueError, match="only to the 'additive'"):
        make_target("he1", ["he2"])


def test_additive_components_set_the_exponents():
    target = make_target("additive", ["he2+he3", "bounded_he1"])
    assert (target.information_exponents, target.reuse_exponents) == ((2.0, 1.0), (2.0, 1.0))


def test_bounded_hermite_sum_parses_like_the_plain_sum():
    # issue 9: a bounded IE-2 + IE-3 sum in one direction, with the exponents of he2+he3 (IE 2, p* 2)
    target = make_target("bounded_he2+bounded_he3")
    assert (target.rank, target.information_exponents, target.reuse_exponents) == (1, (2.0,), (2.0,))
