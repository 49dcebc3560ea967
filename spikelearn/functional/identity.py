r"""Spike identity (SPEC §4): the outliers of consecutive analyses of one weight matched by their singular vectors.

Ranks are not identities: two spikes can cross in value, and a spike born between two analyses shifts the ranks of
those below it. The outliers of analysis ``t`` are matched to those of the previous analysis ``t'`` by the overlaps of
*both* their left and right singular vectors,

.. math:: S_{ij} = |\langle u_i^{(t')}, u_j^{(t)}\rangle| \; |\langle v_i^{(t')}, v_j^{(t)}\rangle| \in [0, 1],

as an assignment (the Hungarian method, :func:`scipy.optimize.linear_sum_assignment`, maximising :math:`\sum S_{ij}`),
accepting a pair only when :math:`S_{ij} \ge` ``MIN_SIMILARITY`` (both overlaps about 0.5 or more). A matched outlier
keeps its id; an unmatched one is born (a new id, its birth step ``t``); a previous outlier left unmatched sank back
into the bulk, its last step being ``t'``. Ids are integers from 0 in order of birth, per weight, and live in the
engine's state, so a resumed run continues them.

Symbols: ``u`` ``(N,)`` left and ``v`` ``(d,)`` right singular vectors (unit norm, sign arbitrary: hence the absolute
values).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = [
    "MIN_SIMILARITY", "IdentityState", "OutlierIds", "identity_from_state_dict", "identity_state_dict",
    "match_outliers", "vector_similarity",
]

MIN_SIMILARITY = 0.25
"""Smallest :math:`|\\langle u, u'\\rangle|\\,|\\langle v, v'\\rangle|` of a match (both overlaps about 0.5)."""


class OutlierIds(NamedTuple):
    """The identities of one analysis's outliers.

    Attributes:
        ids: one id per outlier, in the order of the outlier values.
        births: the step each of them was born (first analysed as an outlier).
        ended: ids of the previous analysis's outliers that sank back into the bulk (not matched now).
        ended_births: their birth steps.
        last_step: the step of the previous analysis (the last step of the ``ended`` ids), ``-1`` for none.
    """

    ids: list[int]
    births: list[int]
    ended: list[int]
    ended_births: list[int]
    last_step: int


class IdentityState(NamedTuple):
    """What matching needs from the previous analysis (tensors on ``W``'s device).

    Attributes:
        left: the previous outliers' left vectors, ``(N, n)``.
        right: their right vectors, ``(d, n)``.
        ids: their ids.
        births: their birth steps.
        next_id: the id the next newborn outlier gets.
        step: the step of that analysis.
    """

    left: Tensor
    right: Tensor
    ids: list[int]
    births: list[int]
    next_id: int
    step: int


def vector_similarity(left_prev: Tensor, right_prev: Tensor, left: Tensor, right: Tensor) -> Tensor:
    r""":math:`S_{ij} = |\langle u_i', u_j\rangle|\,|\langle v_i', v_j\rangle|`, shape ``(n_prev, n)`` (float64).

    Example:
        >>> e = torch.eye(3, dtype=torch.float64)
        >>> vector_similarity(e[:, :2], e[:, :2], e[:, [1, 0]], e[:, [1, 0]]).tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """
    lo = (left_prev.to(torch.float64).T @ left.to(device=left_prev.device, dtype=torch.float64)).abs()
    ro = (right_prev.to(torch.float64).T @ right.to(device=right_prev.device, dtype=torch.float64)).abs()
    return lo * ro


def match_outliers(
    left: Tensor, right: Tensor, state: IdentityState | None, step: int, min_similarity: float = MIN_SIMILARITY
) -> tuple[OutlierIds, IdentityState]:
    """Ids of the outliers with vectors ``left`` ``(N, n)`` and ``right`` ``(d, n)`` at ``step`` (module docstring).

    Args:
        left: left singular vectors of this analysis's outliers, in the order of their values.
        right: their right singular vectors.
        state: the previous analysis's identities (``None``: the first analysis).
        step: this analysis's step.
        min_similarity: smallest similarity of a match.

    Returns:
        ``(OutlierIds, IdentityState)``: this analysis's ids, and the state for the next one.

    Example:
        >>> e = torch.eye(4, dtype=torch.float64)
        >>> first, state = match_outliers(e[:, :2], e[:, :2], None, step=0)
        >>> second, _ = match_outliers(e[:, [1, 2]], e[:, [1, 2]], state, step=5)
        >>> first.ids, second.ids, second.births, second.ended, second.last_step
        ([0, 1], [1, 2], [0, 5], [0], 0)
    """
    n = left.shape[1]
    ids: list[int | None] = [None] * n
    births: list[int | None] = [None] * n
    next_id = 0 if state is None else state.next_id
    matched_prev: set[int] = set()
    if state is not None and n and len(state.ids):
        S = vector_similarity(state.left, state.right, left, right).cpu().numpy()  # (n_prev, n)
        rows, cols = linear_sum_assignment(S, maximize=True)
        for i, j in zip(rows.tolist(), cols.tolist()):
            if S[i, j] >= min_similarity:
                ids[j], births[j] = state.ids[i], state.births[i]
                matched_prev.add(i)
    for j in range(n):
        if ids[j] is None:
            ids[j], births[j], next_id = next_id, step, next_id + 1
    ended, ended_births, last = [], [], -1
    if state is not None:
        last = state.step
        ended = [state.ids[i] for i in range(len(state.ids)) if i not in matched_prev]
        ended_births = [state.births[i] for i in range(len(state.ids)) if i not in matched_prev]
    out = OutlierIds([int(i) for i in ids], [int(b) for b in births], ended, ended_births, last)
    return out, IdentityState(left.detach().clone(), right.detach().clone(), out.ids, out.births, next_id, step)


def identity_state_dict(state: IdentityState | None) -> dict[str, object]:
    """Plain tensors and ints for a checkpoint (``weights_only`` loadable)."""
    if state is None:
        return {}
    return {
        "outlier_left": state.left.detach().cpu(), "outlier_right": state.right.detach().cpu(),
        "outlier_ids": torch.tensor(state.ids, dtype=torch.int64),
        "outlier_births": torch.tensor(state.births, dtype=torch.int64),
        "next_outlier_id": int(state.next_id), "identity_step": int(state.step),
    }


def identity_from_state_dict(state: dict[str, object], device: torch.device | str = "cpu") -> IdentityState | None:
    """The inverse of :func:`identity_state_dict` (``None`` for a checkpoint written before identities existed)."""
    left, right = state.get("outlier_left"), state.get("outlier_right")
    if not isinstance(left, Tensor) or not isinstance(right, Tensor):
        return None
    ids = np.asarray(state["outlier_ids"]).astype(int).tolist()  # type: ignore[arg-type]
    births = np.asarray(state["outlier_births"]).astype(int).tolist()  # type: ignore[arg-type]
    return IdentityState(left.to(device), right.to(device), ids, births, int(state["next_outlier_id"]),  # type: ignore[arg-type]
                         int(state["identity_step"]))  # type: ignore[arg-type]
