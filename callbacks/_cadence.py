"""Which steps a callback acts on: step 0, every step up to ``first_k``, then linear or log-spaced, and the last."""

from __future__ import annotations

import dataclasses
import math

__all__ = ["Cadence"]


def _int_at_least(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")


@dataclasses.dataclass
class Cadence:
    """Step selector: step 0, every step ``t <= first_k``, then every ``every_n_steps`` or log-spaced, and the last.

    A dataclass, so a config gives it as a mapping (``analyses: {first_k: 3, every_n_steps: 10}``).

    Args:
        first_k: every step up to this one is selected (step 0 always).
        every_n_steps: after ``first_k``, steps divisible by this (ignored when ``per_decade`` is set).
        per_decade: after ``first_k``, the steps ``round(10^(i / per_decade))`` instead (log-spaced).
        last_step: also the run's last step (:meth:`due` with ``max_steps``).

    Example:
        >>> cadence = Cadence(first_k=3, every_n_steps=10)
        >>> [t for t in range(35) if t in cadence]
        [0, 1, 2, 3, 10, 20, 30]
        >>> [t for t in range(1, 200) if t in Cadence(first_k=2, per_decade=4)]
        [1, 2, 3, 6, 10, 18, 32, 56, 100, 178]
        >>> Cadence(per_decade=1).due(7, max_steps=7), Cadence(per_decade=1, last_step=False).due(7, max_steps=7)
        (True, False)
    """

    first_k: int = 0
    every_n_steps: int = 1
    per_decade: int | None = None
    last_step: bool = True

    def __post_init__(self) -> None:
        _int_at_least("first_k", self.first_k, 0)
        _int_at_least("every_n_steps", self.every_n_steps, 1)
        if self.per_decade is not None:
            _int_at_least("per_decade", self.per_decade, 1)
        if not isinstance(self.last_step, bool):
            raise ValueError(f"`last_step` must be true or false, got {self.last_step!r}.")
        self._window = (0, -1)  # (lo, next): no step in [lo, next) is selected, next is (a cache, see __contains__)

    def _selected(self, step: int) -> bool:
        if step <= self.first_k:
            return step >= 0
        if self.per_decade is None:
            return step % self.every_n_steps == 0
        center = self.per_decade * math.log10(step)
        return any(round(10 ** (i / self.per_decade)) == step for i in (math.floor(center), math.ceil(center)))

    def next_at_or_after(self, step: int) -> int:
        """The first selected step ``>= step`` (the last step aside)."""
        step = max(step, 0)
        if step <= self.first_k:
            return step
        if self.per_decade is None:
            return -(-step // self.every_n_steps) * self.every_n_steps
        i = max(0, math.floor(self.per_decade * math.log10(step)) - 1)
        while not (round(10 ** (i / self.per_decade)) >= step and self._selected(round(10 ** (i / self.per_decade)))):
            i += 1
        return round(10 ** (i / self.per_decade))

    def __contains__(self, step: int) -> bool:
        # a callback asks about every step in increasing order: answer from the window up to the next selected
        # step (two integer comparisons) and recompute it only past it
        lo, nxt = self._window
        if not lo <= step <= nxt:
            lo, nxt = step, self.next_at_or_after(step)
            self._window = (lo, nxt)
        return step == nxt

    def due(self, step: int, max_steps: int = -1) -> bool:
        """Whether ``step`` is selected, counting ``max_steps`` (the run's last step) when ``last_step``."""
        return step in self or (self.last_step and step == max_steps)
