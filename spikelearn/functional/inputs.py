r"""What the spectral engine is given: how to measure (:class:`EngineConfig`), what it remembers between analyses
(:class:`EngineState`) and what the two-layer theory needs (:class:`TheoryInputs`).

optax's shape: the state goes in and a new state comes out (:func:`spikelearn.functional.engine.analyze`); nothing
hides in globals or in the caller. A config is validated once, where it is built.

Symbols: ``W_t`` ``(N, d)`` the weight at step ``t``; ``a`` ``(N,)``; ``Q_a`` ``(N, K+1)`` the Gram–Schmidt basis of
``a, a^{∘2}, …, a^{∘(K+1)}``; ``B`` ``(d, r)`` the target directions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

from torch import Tensor

from spikelearn.functional.identity import IdentityState
from spikelearn.functional.outliers import OUTLIER_QUANTILE, OutlierRule, outlier_rule

__all__ = ["EngineConfig", "EngineState", "TheoryInputs"]


def _int_at_least(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """How the engine measures a snapshot; validated once, here.

    Attributes:
        k: top singular values to report (capped at ``min(N, d)``; grown past the outliers if needed).
        max_order: highest order ``K`` of the left basis ``a, a^{∘2}, …`` and of the order-k fit.
        quantile: Tracy–Widom quantile of the cut, in ``[0.5, 0.9999]``.
        outlier_rule: name of a registered :class:`~spikelearn.functional.outliers.OutlierRule`.
        tol: relative residual tolerance of the outliers' singular pairs.
        max_iters: Krylov iteration cap (``converged`` is false when it is hit).
        block_size: random columns added to a warm start.
        seed: seed of the random start columns.
        threads: at most this many intra-op CPU threads while the engine measures (set and restored around each
            analysis; training keeps its own); ``None``: the caller's count. Ignored on a GPU.
        comparator: compute the finite-N comparator (the measured bulk's D-transform, the comparator's basis and
            strengths; about the cost of the rest of a warm analysis, BENCHMARKS.md); ``False`` leaves its fields
            null and says so in the note.

    Example:
        >>> EngineConfig(k=8).rule.name
        'edge_scan'
        >>> EngineConfig(quantile=2.0)
        Traceback (most recent call last):
        ...
        ValueError: `quantile` must lie in [0.5, 0.9999], got 2.0.
    """

    k: int = 32
    max_order: int = 4
    quantile: float = OUTLIER_QUANTILE
    outlier_rule: str = "edge_scan"
    tol: float = 1e-3
    max_iters: int = 200
    block_size: int = 8
    seed: int = 0
    threads: int | None = 1
    comparator: bool = True

    def __post_init__(self) -> None:
        _int_at_least("k", self.k, 1)
        _int_at_least("max_order", self.max_order, 0)
        _int_at_least("max_iters", self.max_iters, 1)
        _int_at_least("block_size", self.block_size, 1)
        _int_at_least("seed", self.seed, 0)
        if self.threads is not None:
            _int_at_least("threads", self.threads, 1)
        if not isinstance(self.comparator, bool):
            raise ValueError(f"`comparator` must be true or false, got {self.comparator!r}.")
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) or not self.tol > 0:
            raise ValueError(f"`tol` must be a positive number, got {self.tol!r}.")
        object.__setattr__(self, "_rule", outlier_rule(self.outlier_rule, self.quantile))  # checks both

    @property
    def rule(self) -> OutlierRule:
        """The outlier rule, built once from ``outlier_rule`` and ``quantile``."""
        return self._rule  # type: ignore[attr-defined,no-any-return]


class EngineState(NamedTuple):
    """What the engine remembers from one analysis of a weight to the next (all tensors on ``W``'s device).

    Attributes:
        warm: right Ritz vectors of the last analysis, ``(d, p)``: the next start block.
        last_count: outliers of that analysis (a warm start that reproduces them in one iteration is accepted).
        last_step: the step of that analysis (``-1``: none yet).
        products: :math:`W_s^\\top Q_a` of the last step ``s`` whose products were kept, ``(d, K+1)``.
        products_step: that step ``s``.
        identities: the last analysis's outlier vectors and ids (spike identity across steps).
    """

    warm: Tensor | None = None
    last_count: int | None = None
    last_step: int = -1
    products: Tensor | None = None
    products_step: int | None = None
    identities: IdentityState | None = None

    def previous_products(self, step: int) -> Tensor | None:
        """:math:`W_{t-1}^\\top Q_a` when the state holds the products of step ``t - 1``, else ``None``."""
        return self.products if self.products is not None and self.products_step == step - 1 else None


class TheoryInputs(NamedTuple):
    """What the two-layer theory needs to analyse a snapshot.

    Attributes:
        a: second-layer weights, shape ``(N,)`` (``None``: no deflation, order-k fit or finite-N count).
        alphas: :math:`\\alpha_1..\\alpha_t` of the steps taken (``None``: no asymptotic prediction).
        a_kind: ``"gaussian"``, ``"rademacher"`` or ``"constant"``.
        activation_coefficients: :math:`\\mu_0..\\mu_K` (to flag gapped activations).
        B: orthonormal target directions, shape ``(d, r)`` (``None``: no alignments).
    """

    a: Tensor | None = None
    alphas: Sequence[float] | None = None
    a_kind: str = "gaussian"
    activation_coefficients: Sequence[float] | None = None
    B: Tensor | None = None
