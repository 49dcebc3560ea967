r"""The spectral engine (SPEC §4): a snapshot ``W_t`` in, its :class:`Analysis` and the engine's new state out.

:func:`analyze` is a short composer of stages, each a pure function from NamedTuples to a NamedTuple:

1. spectrum and 2. outliers (:func:`~spikelearn.functional.spectrum.top_spectrum`): the top singular values,
   resolved as far as the outlier rule (:mod:`~spikelearn.functional.outliers`) needs, and its outliers;
2b. regularity (:func:`~spikelearn.functional.regularity.edge_regularity`): whether the top of the bulk is a regular
   soft edge, the tail exponent ``alpha``, the candidates' localisation; on a heavy-tailed edge the localised
   candidates are not counted (:func:`~spikelearn.functional.regularity.counted_outliers`);
3. two-layer theory (:func:`~spikelearn.functional.two_layer.two_layer_theory`, with ``a``): deflated count, left
   alignments, order-k fit, finite-N count; and the asymptotic prediction (with ``alphas``);
4. alignment (:func:`~spikelearn.functional.alignment.outlier_alignment`, with ``B``).

The result holds the stages' own tuples side by side; :meth:`Analysis.record` flattens them to the JSON keys of
``spectra.jsonl`` through :data:`~spikelearn.functional.record.FIELDS`. What the engine remembers between analyses of
one weight (warm start, products with ``Q_a``, last count) is an :class:`~spikelearn.functional.inputs.EngineState`
passed in and returned; :class:`SpectralTracker` owns it along a trajectory and checkpoints it.

Symbols: ``W`` ``(N, d)``, ``a`` ``(N,)``, ``B`` ``(d, r)``, ``K`` = ``max_order``, ``Q_a`` ``(N, K+1)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from spikelearn.functional._measure import bounded_threads, check_matrix, frobenius_sq, tf32_off
from spikelearn.functional.alignment import Alignment, outlier_alignment
from spikelearn.functional.d_transform import BulkMeasure, measured_bulk
from spikelearn.functional.identity import OutlierIds, identity_from_state_dict, identity_state_dict, match_outliers
from spikelearn.functional.inputs import EngineConfig, EngineState, TheoryInputs
from spikelearn.functional.krylov import rmm
from spikelearn.functional.outliers import EDGE_WINDOW, Outliers, numerical_rank
from spikelearn.functional.record import flatten
from spikelearn.functional.regularity import Regularity, counted_outliers, edge_regularity
from spikelearn.functional.spectrum import Spectrum, top_spectrum, zero_spectrum
from spikelearn.functional.theory import A_KINDS, OutlierPrediction, hadamard_power_basis
from spikelearn.functional.two_layer import TwoLayer, asymptotic_prediction, two_layer_theory

__all__ = ["Analysis", "SpectralTracker", "analyze", "reference_products"]


class Analysis(NamedTuple):
    """One snapshot's analysis: the stages' own results side by side.

    Attributes:
        spectrum: stage 1 (:class:`~spikelearn.functional.spectrum.Spectrum`).
        outliers: stage 2 (:class:`~spikelearn.functional.outliers.Outliers`).
        two_layer: stage 3 (:class:`~spikelearn.functional.two_layer.TwoLayer`), ``None`` without ``a``.
        prediction: the asymptotic count, ``None`` without ``alphas``.
        alignment: stage 4 (:class:`~spikelearn.functional.alignment.Alignment`), ``None`` without ``B``.
        notes: what the stages say about the numbers' validity (the record's ``theory_note``).
        identities: the outliers' ids, matched to the previous analysis's (:mod:`~spikelearn.functional.identity`).
        regularity: stage 2b (:class:`~spikelearn.functional.regularity.Regularity`): ``outliers`` are the counted
            ones, ``regularity.candidates`` the rule's count before the localisation filter.
    """

    spectrum: Spectrum
    outliers: Outliers
    two_layer: TwoLayer | None
    prediction: OutlierPrediction | None
    alignment: Alignment | None
    notes: tuple[str, ...]
    identities: OutlierIds
    regularity: Regularity | None = None

    def record(self, **run: Any) -> dict[str, Any]:
        """The JSON record (plain types, ``nan`` as ``None``) with the run's own fields (``step``, ``param``, …)."""
        return flatten(self, **run)


def _check_inputs(W: Tensor, theory: TheoryInputs, config: EngineConfig, state: EngineState) -> None:
    check_matrix(W)
    N, d = W.shape
    K1 = config.max_order + 1
    if theory.a_kind not in A_KINDS:
        raise ValueError(f"`a_kind` must be one of {A_KINDS}, got {theory.a_kind!r}.")
    if theory.a is not None and (theory.a.ndim != 1 or theory.a.shape[0] != N):
        raise ValueError(f"`a` must have shape ({N},), got {tuple(theory.a.shape)}.")
    if theory.B is not None and (theory.B.ndim != 2 or theory.B.shape[0] != d):
        raise ValueError(f"`B` must have shape ({d}, r), got {tuple(theory.B.shape)}.")
    if theory.a is not None and K1 > N:
        raise ValueError(
            f"`max_order` = {config.max_order} needs the {K1} left vectors a, a^2, ... to fit in width N = {N}: "
            f"use max_order <= {N - 1} or a wider network."
        )
    if theory.a is not None and state.products is not None and tuple(state.products.shape) != (d, K1):
        raise ValueError(
            f"state `products` must have shape ({d}, {K1}) (products with Q_a of the same `max_order`), "
            f"got {tuple(state.products.shape)}."
        )


def analyze(
    W: Tensor,
    theory: TheoryInputs | None = None,
    config: EngineConfig | None = None,
    state: EngineState | None = None,
    step: int = 0,
) -> tuple[Analysis, EngineState]:
    r"""Analyse one snapshot ``W_t`` (SPEC §4); the engine's entry point.

    Args:
        W: weights, shape ``(N, d)``, float32 or float64, finite.
        theory: ``a``, ``alphas``, ``a_kind``, ``activation_coefficients``, ``B`` (all optional).
        config: how to measure (default :class:`~spikelearn.functional.inputs.EngineConfig`).
        state: what an earlier analysis of this weight left (default: none, a cold start).
        step: ``t``; the order-k fit uses the state's products when they are of step ``t - 1``.

    Returns:
        ``(Analysis, new EngineState)``.

    Raises:
        ValueError: on wrong shapes, NaN/Inf in ``W``, an unknown ``a_kind``, state products of another shape.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> N, d = 400, 800
        >>> u = torch.randn(N, generator=g, dtype=torch.float64); u /= u.norm()
        >>> v = torch.randn(d, generator=g, dtype=torch.float64); v /= v.norm()
        >>> W = torch.randn(N, d, generator=g, dtype=torch.float64) / d**0.5
        >>> analysis, state = analyze(W + 3.0 * torch.outer(u, v), config=EngineConfig(k=8))
        >>> analysis.outliers.count, round(analysis.outliers.values[0], 1), analysis.outliers.status
        (1, 3.2, ['clear'])
    """
    theory, config, state = theory or TheoryInputs(), config or EngineConfig(), state or EngineState()
    _check_inputs(W, theory, config, state)
    with bounded_threads(config.threads, W.device):
        return _analyze(W, theory, config, state, step)


def _analyze(
    W: Tensor, theory: TheoryInputs, config: EngineConfig, state: EngineState, step: int
) -> tuple[Analysis, EngineState]:
    fro_sq = frobenius_sq(W)
    a = theory.a
    with tf32_off(W.device), torch.no_grad():
        basis = None if a is None else hadamard_power_basis(a.to(W.device), config.max_order)  # (N, K+1) x 2
        extra_left = None if basis is None else basis[1].to(W.dtype)
        if fro_sq > 0:
            spectrum, outliers = top_spectrum(W, config, state, fro_sq, extra_left)
        else:  # all zeros: nothing to resolve, no bulk, no outliers
            spectrum, outliers = zero_spectrum(W, config, extra_left)
        regularity = edge_regularity(spectrum.values.tolist(), spectrum.left, spectrum.right, outliers,
                                     int(getattr(config.rule, "window", 0)) or EDGE_WINDOW)
        outliers = counted_outliers(outliers, regularity)
        two_layer = None
        if basis is not None:
            learned = None if state.identities is None else state.identities.left
            two_layer = two_layer_theory(W, spectrum, outliers, basis, state.previous_products(step), theory.B,
                                         _bulk(W, spectrum, outliers, regularity, config), learned)
        alignment = None
        if theory.B is not None:
            alignment = outlier_alignment(spectrum.right[:, : outliers.count], theory.B.to(W.device))
        n = outliers.count
        identities, identity_state = match_outliers(spectrum.left[:, :n], spectrum.right[:, :n], state.identities, step)
    prediction = asymptotic_prediction(theory)
    notes = [spectrum.note, prediction.note if prediction is not None else None,
             None if two_layer is None else two_layer.note(outliers)]
    if outliers.method == "degenerate":
        notes.append(_degenerate_note(spectrum, outliers, config, W.shape))
    if regularity.edge_regular is False:
        notes.append(_heavy_tail_note(regularity, outliers))
    if outliers.marginal:
        notes.append(f"{outliers.marginal} outlier(s) within {_marginal_width(config)} Tracy-Widom units of the cut: "
                     "marginal")
    analysis = Analysis(spectrum, outliers, two_layer, prediction, alignment, tuple(n for n in notes if n), identities,
                        regularity)
    return analysis, _next_state(state, analysis, step)._replace(identities=identity_state)


def _bulk(W: Tensor, spectrum: Spectrum, outliers: Outliers, regularity: Regularity, config: EngineConfig
          ) -> BulkMeasure | str:
    # the measured bulk's law for the comparator (stage 3), or why BGN has no bulk to work with
    if not config.comparator:
        return "finite-N comparator not computed (the engine's `comparator` is off)"
    if outliers.method == "degenerate":
        return "finite-N count withheld: no bulk to measure BGN locations against (degenerate spectrum)"
    if regularity.edge_regular is False:
        return ("finite-N count withheld: the top of the bulk is not a regular soft edge (heavy-tailed), where BGN "
                "locations do not apply")
    return measured_bulk(W, spectrum, outliers, config.seed)


def _degenerate_note(spectrum: Spectrum, outliers: Outliers, config: EngineConfig, shape: tuple[int, int]) -> str:
    if spectrum.frobenius_sq == 0:
        return "the weight is zero (or so small that ||W||_F^2 underflows): no bulk and no outliers"
    rank = numerical_rank(spectrum.values.tolist(), *shape, torch.finfo(spectrum.krylov.basis.dtype).eps)
    return (f"degenerate bulk: numerical rank {rank} of min(N, d) = {min(shape)} leaves the {config.outlier_rule} "
            f"rule fewer than the {getattr(config.rule, 'window', 0) + 1} bulk values it needs, so no value is "
            "counted as an outlier")


def _heavy_tail_note(regularity: Regularity, outliers: Outliers) -> str:
    dropped = regularity.candidates - outliers.count
    return (f"heavy-tailed bulk (tail alpha {regularity.tail_alpha:.2f}; localised singular vectors at the top of the "
            f"bulk): the edge is not a regular soft edge, {dropped} of {regularity.candidates} candidate(s) "
            "not counted (localised or inside the heavy tail)")


def _marginal_width(config: EngineConfig) -> str:
    return f"{getattr(config.rule, 'marginal_width', 2.0):g}"


def _next_state(state: EngineState, analysis: Analysis, step: int) -> EngineState:
    # the rule's own count (before the localisation filter): what the next warm start's stopping rule reproduces
    count = analysis.outliers.count if analysis.regularity is None else analysis.regularity.candidates
    state = state._replace(warm=analysis.spectrum.krylov.warm_vectors, last_step=step, last_count=count)
    if analysis.two_layer is not None:
        state = state._replace(products=analysis.two_layer.a_products, products_step=step)
    return state


def reference_products(W: Tensor, a: Tensor, max_order: int, threads: int | None = None) -> Tensor:
    """:math:`W^\\top Q_a`, ``(d, K+1)`` in ``W``'s dtype: what the engine keeps of a snapshot it does not analyse
    (``W_{t-1}`` before an analysed step ``t``), instead of a copy of ``W``; ``threads`` bounds the CPU threads as
    :attr:`EngineConfig.threads <spikelearn.functional.inputs.EngineConfig>` does."""
    check_matrix(W)
    with torch.no_grad(), bounded_threads(threads, W.device):
        Qa = hadamard_power_basis(a.to(W.device), max_order)[1].to(W.dtype)
        return rmm(W, Qa)


class SpectralTracker:
    r"""The engine along a trajectory: one object per watched weight that owns its :class:`EngineState`.

    ``update(W_t, t)`` runs :func:`analyze` warm-started from the previous analysis and with the cached products
    :math:`W_{t-1}^\top Q_a` (``W_{t-1}`` is not kept; the finite-N comparator needs no ``W_0``);
    ``remember(W_t, t, a)`` keeps the products of a step that is not analysed but precedes one that is.
    ``state_dict()`` / ``load_state_dict()`` carry the state through a checkpoint, so a resumed run's records equal
    an uninterrupted run's.

    Args:
        config: how to measure (default :class:`~spikelearn.functional.inputs.EngineConfig`).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> tracker = SpectralTracker(EngineConfig(k=4))
        >>> W = torch.randn(80, 60, generator=g, dtype=torch.float64) / 60**0.5
        >>> tracker.update(W, 0).outliers.count, tracker.update(W * 1.01, 1).outliers.count
        (0, 0)
        >>> sorted(tracker.state_dict())[:6]
        ['identity_step', 'last_count', 'last_step', 'next_outlier_id', 'outlier_births', 'outlier_ids']
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.state = EngineState()

    @property
    def last_step(self) -> int:
        """The step of the last analysis (``-1``: none)."""
        return self.state.last_step

    def update(self, W: Tensor, step: int, theory: TheoryInputs | None = None) -> Analysis:
        """Analyse ``W_t`` (``(N, d)``) at step ``t`` and keep the new state."""
        analysis, self.state = analyze(W, theory, self.config, self.state, step)
        return analysis

    def remember(self, W: Tensor, step: int, a: Tensor) -> None:
        """Keep :math:`W_t^\\top Q_a` of an unanalysed step ``t`` (for the order-k fit of step ``t + 1``)."""
        products = reference_products(W, a, self.config.max_order, self.config.threads)
        self.state = self.state._replace(products=products, products_step=step)

    def state_dict(self) -> dict[str, Tensor | int | None]:
        """Plain tensors and ints (CPU): loadable with ``torch.load(..., weights_only=True)``."""
        s = self.state
        return {
            "warm": None if s.warm is None else s.warm.detach().cpu(),
            "products": None if s.products is None else s.products.detach().cpu(),
            "products_step": s.products_step if s.products is not None else None,
            "last_step": s.last_step,
            "last_count": s.last_count,
            **identity_state_dict(s.identities),
        }

    def load_state_dict(self, state: dict[str, Tensor | int | None], device: torch.device | str = "cpu") -> None:
        """Restore :meth:`state_dict` onto ``device`` (a ``W0_products`` key of a checkpoint written before the
        comparator stopped needing :math:`W_0` is ignored)."""
        def _on(x: object) -> Tensor | None:
            return x.to(device) if isinstance(x, Tensor) else None

        products, products_step = _on(state.get("products")), state.get("products_step")
        last_count = state.get("last_count")
        self.state = EngineState(
            warm=_on(state.get("warm")),
            last_count=None if last_count is None else int(last_count),  # type: ignore[arg-type]
            last_step=int(state.get("last_step", -1)),  # type: ignore[arg-type]
            products=None if products is None or products_step is None else products,
            products_step=None if products is None or products_step is None else int(products_step),  # type: ignore[arg-type]
            identities=identity_from_state_dict(state, device),
        )
