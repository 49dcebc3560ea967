r"""Predictions of the two-step theory (SPEC §2, §4): outlier counts and learnable directions.

Symbols:

* ``alphas`` :math:`(\alpha_1, \alpha_2, \dots)`, the step-size exponents,
  :math:`\eta_t = c_t N^{\alpha_t}`; ``t = len(alphas)`` is the number of steps taken.
* ``a`` of shape ``(N,)``, the fixed second-layer weights; :math:`a^{\circ m}` its
  elementwise power; :math:`\hat a_k = a^{\circ(k+1)}/\|a^{\circ(k+1)}\|` the left vector of
  the order-``k`` term.
* ``mu`` :math:`(\mu_0, \mu_1, \dots)`, the activation's Hermite coefficients
  :math:`\mu_k = E[\sigma^{(k)}(z)]`; order ``k`` needs :math:`\mu_{k+1} \ne 0`.
* ``K = floor(alpha_2 / (1/2 - alpha_1))``, the number of visible orders ``k >= 1``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor


__all__ = [
    "A_KINDS",
    "FiniteNPrediction",
    "LearnableDirections",
    "OutlierPrediction",
    "hadamard_power_basis",
    "learnable_directions",
    "predicted_outlier_count",
    "extended_outlier_count",
    "EXTENSION_NOTE",
]

A_KINDS = ("gaussian", "rademacher", "constant")
_INTEGER_TOL = 1e-9


class OutlierPrediction(NamedTuple):
    """Asymptotic outlier counts after ``t`` steps.

    Attributes:
        total: predicted outliers of ``W_t`` (``None`` when the theory has no answer).
        deflated: predicted outliers of :math:`(I - \\hat a\\hat a^\\top) W_t`.
        orders: the orders ``k >= 1`` counted (``()`` for ``t <= 1``).
        borderline: ``True`` at an integer ratio: the last order is Theta(1) and is an
            outlier only above the BBP threshold, so the count may be one less.
        within_theory: ``False`` when a condition of the theory fails (see ``note``).
        note: human-readable reasons and caveats (``""`` when none).
        extension: ``True`` past two steps: the counts are the stated step-``t`` extension of the two-step law
            (:func:`extended_outlier_count`, docs/theory.md §2), a conjecture spikelearn tests, not a theorem.
    """

    total: int | None
    deflated: int | None
    orders: tuple[int, ...]
    borderline: bool
    within_theory: bool
    note: str
    extension: bool = False


class LearnableDirections(NamedTuple):
    """Which target directions appear in the outliers after two steps.

    Attributes:
        learnable: one flag per direction ``beta_j``.
        borderline: per direction, ``True`` when the condition holds with equality.
        note: caveats (``""`` when none).
    """

    learnable: tuple[bool, ...]
    borderline: tuple[bool, ...]
    note: str


class FiniteNPrediction(NamedTuple):
    """Finite-N spiked-model prediction (SPEC §4; built by
    :func:`~spikelearn.functional.two_layer.finite_n_comparator`).

    Attributes:
        count: number of strengths above ``critical_strength`` (their locations clear ``cut``).
        strengths: strengths :math:`\\theta_i` of the comparator's low-rank part, units of ``W``, descending.
        locations: BGN locations against the measured bulk (units of ``W``), ``nan`` below ``critical_strength``.
        cut: the threshold the locations were compared with.
        critical_strength: :math:`D(\\text{cut})^{-1/2}`, units of ``W``.
    """

    count: int
    strengths: list[float]
    locations: list[float]
    cut: float
    critical_strength: float


def _check_alphas(alphas: Sequence[float]) -> tuple[float, ...]:
    try:
        out = tuple(float(x) for x in alphas)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`alphas` must be a sequence of numbers, got {alphas!r}.") from err
    if not all(math.isfinite(x) for x in out):
        raise ValueError(f"`alphas` must be finite, got {alphas!r}.")
    return out


def predicted_outlier_count(
    alphas: Sequence[float],
    *,
    a_kind: str = "gaussian",
    activation_coefficients: Sequence[float] | None = None,
) -> OutlierPrediction:
    r"""Predicted outlier counts after ``t = len(alphas)`` steps (SPEC §2).

    .. math::
        t=0: 0, \qquad t=1: 1, \qquad
        t=2: 1 + K \text{ total and } K \text{ deflated}, \quad
        K = \Bigl\lfloor \frac{\alpha_2}{1/2 - \alpha_1} \Bigr\rfloor .

    Caveats, reported in ``note``: at an integer ratio the order-``K`` term is
    :math:`\Theta(1)` (``borderline``); :math:`\alpha_t \notin [0, 1/2)` is outside the theory
    (``alpha_1 >= 1/2`` leaves ``K`` undefined, so the counts are ``None``; a
    :class:`UserWarning` is emitted); a counted order ``k`` with :math:`\mu_{k+1} = 0`
    (odd ``tanh``: :math:`\mu_2=\mu_4=0`; ``relu``: :math:`\mu_3=\mu_5=0`) is outside the
    theory; Rademacher ``a`` spans only ``{a, 1}`` (at most 2 directions: total capped at 2,
    deflated at 1); constant ``a`` gives one direction. ``t > 2`` returns the stated extension
    (:func:`extended_outlier_count`), marked ``extension`` and ``within_theory = False``.

    Args:
        alphas: exponents :math:`\alpha_1, \dots, \alpha_t` of the steps taken so far.
        a_kind: ``"gaussian"``, ``"rademacher"`` or ``"constant"``.
        activation_coefficients: :math:`\mu_0, \mu_1, \dots`; orders beyond the list are
            assumed non-zero. ``None`` skips the gapped-activation check.

    Returns:
        ``OutlierPrediction(total, deflated, orders, borderline, within_theory, note)``.

    Raises:
        ValueError: if ``a_kind`` is unknown or ``alphas`` is not a finite sequence.

    Example:
        >>> predicted_outlier_count([0.3, 0.25])[:2]
        (2, 1)
        >>> predicted_outlier_count([0.3, 0.45]).total
        3
    """
    if a_kind not in A_KINDS:
        raise ValueError(f"`a_kind` must be one of {A_KINDS}, got {a_kind!r}.")
    alphas = _check_alphas(alphas)
    t = len(alphas)
    if t == 0:
        return OutlierPrediction(0, 0, (), False, True, "")
    if t > 2:
        return extended_outlier_count(alphas, a_kind=a_kind, activation_coefficients=activation_coefficients)
    notes: list[str] = []
    within = True
    bad = [i + 1 for i, x in enumerate(alphas) if not 0.0 <= x < 0.5]
    if bad:
        msg = f"outside the theory: alpha_{bad} = {[alphas[i - 1] for i in bad]} not in [0, 1/2)"
        warnings.warn(msg, UserWarning, stacklevel=2)
        notes.append(msg)
        within = False
    mu = None if activation_coefficients is None else [float(m) for m in activation_coefficients]

    def gapped(order: int) -> bool:
        return mu is not None and order + 1 < len(mu) and abs(mu[order + 1]) < 1e-12

    if t == 1:
        if gapped(0):
            notes.append("outside the theory: mu_1 = 0, the first step has no spike")
            within = False
        if alphas[0] == 0.0:
            notes.append("alpha_1 = 0: the spike is Theta(1), an outlier only above BBP")
        return OutlierPrediction(1, 0, (), alphas[0] == 0.0, within, "; ".join(notes))
    alpha1, alpha2 = alphas
    if alpha1 >= 0.5:
        return OutlierPrediction(None, None, (), False, False, "; ".join(notes))
    ratio = alpha2 / (0.5 - alpha1)
    n_orders = max(math.floor(ratio + _INTEGER_TOL), 0)
    borderline = n_orders >= 1 and abs(ratio - round(ratio)) < _INTEGER_TOL
    if borderline:
        notes.append(
            f"integer ratio alpha2/(1/2-alpha1) = {round(ratio)}: the order-{n_orders} term is "
            "Theta(1), an outlier only above the BBP threshold (count may be one less)"
        )
    orders = tuple(range(1, n_orders + 1))
    gaps = [k for k in (0, *orders) if gapped(k)]
    if gaps:
        notes.append(f"outside the theory: mu_(k+1) = 0 for counted orders k = {gaps}")
        within = False
    total, deflated = 1 + n_orders, n_orders
    if a_kind == "rademacher":
        if total > 2:
            notes.append("Rademacher a spans only {a, 1}: at most 2 directions")
        total, deflated = min(total, 2), min(deflated, 1)
    elif a_kind == "constant":
        if total > 1:
            notes.append("constant a: one direction")
        total, deflated = 1, 0
    return OutlierPrediction(total, deflated, orders, borderline, within, "; ".join(notes))


EXTENSION_NOTE = ("outside the two-step theory: the count is the stated step-t extension of the two-step law "
                  "(docs/theory.md section 2), a conjecture this tool tests, not a theorem")


def extended_outlier_count(
    alphas: Sequence[float],
    *,
    a_kind: str = "gaussian",
    activation_coefficients: Sequence[float] | None = None,
) -> OutlierPrediction:
    r"""The step-``t`` extension of the two-step law (a conjecture; docs/theory.md §2 derives it).

    Step ``s`` acts on :math:`W_{s-1}`, whose pre-activations have moved by
    :math:`\epsilon_s symp N^{arlpha_s - 1/2}` with :math:`arlpha_s = \max_{r < s} lpha_r` (the largest
    earlier step dominates, as step 1 does at ``s = 2``). Expanding :math:`\sigma'` in that shift, its order-``k``
    term has left vector :math:`\hat a_k \propto a^{\circ(k+1)}` and strength
    :math:`	heta_k^{(s)} symp N^{lpha_s - k(1/2 - arlpha_s)}`; terms of one order from different steps share
    :math:`\hat a_k` and merge. So order ``k >= 1`` is an outlier after step ``t`` iff some step gave it a positive
    exponent:

    .. math:: n_{out}(t) = 1 + \max_{2 \le s \le t} \Bigl\lfloor rac{lpha_s}{1/2 - arlpha_s} \Bigr
floor,
              \qquad 	ext{deflated: } n_{out}(t) - 1 .

    At ``t = 2`` this is the theorem (:func:`predicted_outlier_count`). The same caveats apply (integer ratios,
    :math:`\mu_{k+1} = 0`, Rademacher or constant ``a``); every ``α`` must lie in ``[0, 1/2)``.

    Example:
        >>> p = extended_outlier_count([0.3, 0.35, 0.25])  # 0.35 / 0.2 -> 1; then 0.25 / 0.15 -> 1
        >>> p.total, p.deflated, p.extension
        (2, 1, True)
        >>> extended_outlier_count([0.3, 0.45, 0.2]).total  # after N^0.45 the shift is ~N^-0.05: 0.2 / 0.05 -> 4
        5
        >>> extended_outlier_count([0.3, 0.2, 0.45]).total  # step 3 after steps of sizes N^0.3, N^0.2: 0.45 / 0.2
        3
    """
    alphas = _check_alphas(alphas)
    if len(alphas) <= 2:
        return predicted_outlier_count(alphas, a_kind=a_kind, activation_coefficients=activation_coefficients)
    notes = [EXTENSION_NOTE]
    bad = [i + 1 for i, x in enumerate(alphas) if not 0.0 <= x < 0.5]
    if bad:
        notes.append(f"alpha_{bad} = {[alphas[i - 1] for i in bad]} not in [0, 1/2): the extension has no count")
        return OutlierPrediction(None, None, (), False, False, "; ".join(notes), True)
    best, borderline = 0, False
    for s in range(1, len(alphas)):  # 0-based: step s + 1 >= 2
        ratio = alphas[s] / (0.5 - max(alphas[:s]))
        n = max(math.floor(ratio + _INTEGER_TOL), 0)
        if n > best or (n == best and n >= 1 and abs(ratio - round(ratio)) < _INTEGER_TOL):
            best, borderline = n, n >= 1 and abs(ratio - round(ratio)) < _INTEGER_TOL
    mu = None if activation_coefficients is None else [float(m) for m in activation_coefficients]
    gaps = [k for k in range(best + 1) if mu is not None and k + 1 < len(mu) and abs(mu[k + 1]) < 1e-12]
    if gaps:
        notes.append(f"mu_(k+1) = 0 for counted orders k = {gaps}")
    if borderline:
        notes.append(f"integer ratio: the order-{best} term is Theta(1), an outlier only above BBP")
    total, deflated = 1 + best, best
    if a_kind == "rademacher":
        total, deflated = min(total, 2), min(deflated, 1)
    elif a_kind == "constant":
        total, deflated = 1, 0
    return OutlierPrediction(total, deflated, tuple(range(1, best + 1)), borderline, False, "; ".join(notes), True)


def learnable_directions(
    alpha1: float,
    alpha2: float,
    *,
    reused: bool,
    information_exponents: Sequence[float] | None = None,
    reuse_exponents: Sequence[float] | None = None,
    staircase: Sequence[bool] | None = None,
) -> LearnableDirections:
    r"""Which target directions :math:`\beta_j` the outliers carry after two steps (SPEC §2).

    Independent batches: :math:`\beta_j` is learnable iff :math:`\mathrm{IE}(\beta_j) = 1`,
    except directions the caller flags in ``staircase`` (non-additive links such as
    :math:`z_1 + z_1 z_2`, whose :math:`\beta_2` appears at order 1). Reused batches:

    .. math:: \beta_j \text{ learnable} \iff p^*(\beta_j) < \infty \text{ and }
              \alpha_2 > (p^*(\beta_j) - 1)\,(1/2 - \alpha_1).

    Args:
        alpha1: first step exponent, in ``[0, 1/2)``.
        alpha2: second step exponent.
        reused: whether step 2 reuses the batch of step 1.
        information_exponents: ``IE(beta_j)`` per direction (needed when not ``reused``).
        reuse_exponents: ``p*(beta_j)`` per direction, ``math.inf`` for even links (needed when
            ``reused``).
        staircase: optional per-direction flags for the staircase exception (independent).

    Returns:
        ``LearnableDirections(learnable, borderline, note)``.

    Raises:
        ValueError: if the exponents needed are missing, lengths differ, or
            ``alpha1`` is not in ``[0, 1/2)``.

    Example:
        >>> learnable_directions(0.2, 0.35, reused=True, reuse_exponents=[1, 2, math.inf]).learnable
        (True, True, False)
    """
    if not 0.0 <= alpha1 < 0.5:
        raise ValueError(f"`alpha1` must lie in [0, 1/2), got {alpha1!r}.")
    notes: list[str] = []
    if not reused:
        if information_exponents is None:
            raise ValueError("`information_exponents` is required when `reused` is False.")
        ie = list(information_exponents)
        flags = [False] * len(ie) if staircase is None else [bool(s) for s in staircase]
        if len(flags) != len(ie):
            raise ValueError(
                f"`staircase` must have {len(ie)} entries (one per direction), got {len(flags)}."
            )
        learn = tuple(float(e) == 1.0 or s for e, s in zip(ie, flags))  # IE may be math.inf
        if any(flags):
            notes.append("staircase directions flagged by the caller count as learnable")
        return LearnableDirections(learn, (False,) * len(ie), "; ".join(notes))
    if reuse_exponents is None:
        raise ValueError("`reuse_exponents` is required when `reused` is True.")
    learn_list, border = [], []
    for p in reuse_exponents:
        p = float(p)
        if math.isinf(p):
            learn_list.append(False)
            border.append(False)
            continue
        need = (p - 1.0) * (0.5 - alpha1)
        learn_list.append(alpha2 > need + _INTEGER_TOL)
        border.append(abs(alpha2 - need) <= _INTEGER_TOL)
    if any(border):
        notes.append("equality alpha2 = (p*-1)(1/2-alpha1): Theta(1) term, only above BBP")
    return LearnableDirections(tuple(learn_list), tuple(border), "; ".join(notes))


def hadamard_power_basis(a: Tensor, max_order: int) -> tuple[Tensor, Tensor]:
    r"""Columns :math:`a^{\circ(k+1)}`, ``k = 0..max_order``, and their Gram–Schmidt basis.

    .. math:: A = [a, a^{\circ 2}, \dots, a^{\circ(K+1)}] = Q R, \quad
              R_{kk} > 0,

    computed in float64 on ``a``'s device (the powers span many orders of magnitude, so the
    columns are normalised before the QR factorisation).

    Args:
        a: second-layer weights, shape ``(N,)``.
        max_order: ``K >= 0``.

    Returns:
        ``(A, Q)``, both float64 of shape ``(N, K + 1)``: the raw powers and the orthonormal
        Gram–Schmidt basis (``Q[:, 0] = a/||a||``).

    Raises:
        ValueError: if ``a`` is not 1-D or ``max_order`` is negative.

    Example:
        >>> A, Q = hadamard_power_basis(torch.tensor([1.0, -2.0, 3.0]), 1)
        >>> A[:, 1].tolist()
        [1.0, 4.0, 9.0]
        >>> torch.allclose(Q.T @ Q, torch.eye(2, dtype=torch.float64))
        True
    """
    if a.ndim != 1:
        raise ValueError(f"`a` must be 1-D of shape (N,), got shape {tuple(a.shape)}.")
    if int(max_order) != max_order or max_order < 0:
        raise ValueError(f"`max_order` must be a non-negative integer, got {max_order!r}.")
    a64 = a.detach().to(torch.float64)
    A = torch.stack([a64 ** (k + 1) for k in range(max_order + 1)], dim=1)  # (N, K+1)
    norms = torch.linalg.vector_norm(A, dim=0).clamp_min(torch.finfo(torch.float64).tiny)
    Q, R = torch.linalg.qr(A / norms)  # (N, K+1), (K+1, K+1)
    sign = torch.sign(torch.diagonal(R))
    sign[sign == 0] = 1.0
    return A, Q * sign
