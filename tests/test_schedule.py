"""Step sizes eta_t = c_t N^{alpha_t} (SPEC §1), checked against the closed form written out."""

from __future__ import annotations

import math

import pytest

from spikelearn.functional import StepSchedule, step_size


@pytest.mark.parametrize("N", [16, 1000, 4096])
@pytest.mark.parametrize(("c", "alpha"), [(1.0, 0.0), (0.5, 0.3), (2.0, 0.45)])
def test_step_size_closed_form(c, alpha, N):
    assert step_size(c, alpha, N) == c * N**alpha


def test_listed_steps_then_constant_tail():
    schedule = StepSchedule.validated(c=[1.0, 2.0, 0.5], alpha=[0.1, 0.2, 0.3])
    N = 1000
    assert [schedule.eta(t, N) for t in range(1, 6)] == [1.0 * N**0.1, 2.0 * N**0.2, 0.5 * N**0.3, 0.5 * N**0.3, 0.5 * N**0.3]


def test_inverse_sqrt_tail():
    schedule = StepSchedule.validated(c=[1.0, 2.0], alpha=[0.0, 0.0], tail="inverse_sqrt")
    assert schedule.eta(8, 100) == pytest.approx(2.0 * math.sqrt(2 / 8))


def test_exponents_of_steps_taken():
    schedule = StepSchedule.validated(c=[1.0, 1.0], alpha=[0.3, 0.45])
    assert schedule.exponents(3) == [0.3, 0.45, 0.45]


@pytest.mark.parametrize("alpha", [-0.1, 0.5, 0.7])
def test_alpha_outside_theory_warns(alpha):
    with pytest.warns(UserWarning, match="two-step theory does not apply"):
        StepSchedule.validated(c=[1.0], alpha=[alpha])


@pytest.mark.parametrize(("c", "alpha", "match"), [
    ([], [], "non-empty"),
    ([1.0], [0.1, 0.2], "equal length"),
    ([0.0], [0.1], r"step_c\[0\]"),
    ([1.0, float("nan")], [0.1, 0.1], r"step_c\[1\]"),
    ([1.0], [float("inf")], r"step_alpha\[0\]"),
])
def test_bad_schedules_name_the_field(c, alpha, match):
    with pytest.raises(ValueError, match=match):
        StepSchedule.validated(c=c, alpha=alpha)


def test_unknown_tail():
    with pytest.raises(ValueError, match="step_tail"):
        StepSchedule.validated(c=[1.0], alpha=[0.1], tail="cosine")


def test_steps_start_at_one():
    with pytest.raises(ValueError, match="numbered from 1"):
        StepSchedule.validated(c=[1.0], alpha=[0.1]).eta(0, 10)
