r"""Step sizes :math:`\eta_t = c_t N^{\alpha_t}` (SPEC §1).

Symbols:
    ``c``: prefactors ``c_1, c_2, …`` of the listed steps; ``alpha``: exponents ``α_1, α_2, …``.
    After the listed steps, many-step runs continue with a *tail*: ``"constant"`` repeats the last listed
    :math:`(c, \alpha)`; ``"inverse_sqrt"`` decays it as :math:`\eta_T \sqrt{T/t}` (``T`` = number listed).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["TAILS", "StepSchedule", "step_size"]

TAILS = ("constant", "inverse_sqrt")
"""How ``η_t`` continues after the listed steps."""


def step_size(c: float, alpha: float, N: int) -> float:
    r"""One step size :math:`\eta = c\,N^{\alpha}`.

    Example:
        >>> step_size(2.0, 0.5, 16)
        8.0
    """
    return c * N**alpha


def _numbers(name: str, values: Sequence[float]) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"`{name}` must be a list of numbers, got {type(values).__name__} {values!r}.")
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"`{name}[{i}]` must be a number, got {type(value).__name__} {value!r}.")
    return tuple(float(v) for v in values)


class StepSchedule(NamedTuple):
    """Per-step sizes :math:`\\eta_t = c_t N^{\\alpha_t}` for ``t = 1, 2, …``.

    Attributes:
        c: prefactors of the listed steps (positive).
        alpha: exponents of the listed steps (same length as ``c``).
        tail: continuation after the listed steps, one of :data:`TAILS`.

    Example:
        >>> schedule = StepSchedule.validated(c=[1.0, 2.0], alpha=[0.0, 0.25])
        >>> [schedule.eta(t, N=16) for t in (1, 2, 3)]
        [1.0, 4.0, 4.0]
    """

    c: tuple[float, ...]
    alpha: tuple[float, ...]
    tail: str = "constant"

    @classmethod
    def validated(cls, c: Sequence[float], alpha: Sequence[float], tail: str = "constant") -> StepSchedule:
        """Build a schedule, checking every field; warns when an ``α_t`` is outside ``[0, 1/2)``.

        Raises:
            ValueError: on empty or mismatched lists, non-finite or non-positive ``c_t``, non-finite ``α_t``,
                or an unknown ``tail``.
        """
        c, alpha = _numbers("step_c", c), _numbers("step_alpha", alpha)
        if not c or len(c) != len(alpha):
            raise ValueError(
                f"`step_c` and `step_alpha` must be non-empty lists of equal length, got {len(c)} and {len(alpha)} entries."
            )
        for t, value in enumerate(c, start=1):
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"`step_c[{t - 1}]` (c_{t}) must be a finite number > 0, got {value!r}.")
        for t, value in enumerate(alpha, start=1):
            if not math.isfinite(value):
                raise ValueError(f"`step_alpha[{t - 1}]` (alpha_{t}) must be finite, got {value!r}.")
            if not 0.0 <= value < 0.5:
                warnings.warn(
                    f"`step_alpha[{t - 1}]` (alpha_{t}) = {value} is outside [0, 1/2): the two-step theory does not apply.",
                    UserWarning,
                    stacklevel=2,
                )
        if tail not in TAILS:
            raise ValueError(f"Expected `step_tail` to be one of {list(TAILS)}, got {tail!r}.")
        return cls(c, alpha, tail)

    def exponent(self, t: int) -> float:
        """``α_t`` of step ``t >= 1`` (the last listed one after the list)."""
        if t < 1:
            raise ValueError(f"Steps are numbered from 1, got t={t!r}.")
        return self.alpha[min(t, len(self.alpha)) - 1]

    def eta(self, t: int, N: int) -> float:
        r""":math:`\eta_t` of step ``t >= 1`` at width ``N``."""
        listed = len(self.c)
        base = step_size(self.c[min(t, listed) - 1], self.exponent(t), N)
        if t > listed and self.tail == "inverse_sqrt":
            return base * math.sqrt(listed / t)
        return base

    def exponents(self, steps: int) -> list[float]:
        """``[α_1, …, α_steps]``, the exponents of the steps taken so far."""
        return [self.exponent(t) for t in range(1, steps + 1)]
