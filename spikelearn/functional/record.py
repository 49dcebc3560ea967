r"""The record (SPEC §4): one table from an analysis to its JSON keys, TensorBoard tags, charts and HPARAMS metrics.

A line of ``spectra.jsonl`` is :func:`flatten` of an :class:`~spikelearn.functional.engine.Analysis` plus the run's
own fields (``step``, ``eta``, ``param``, ``N``, ``d``, ``aspect_ratio``, ``analysis_seconds``, ``rank``). Every
reader of numbers (the monitor's TensorBoard scalars :func:`scalars`, the custom-scalars layout :func:`charts`, the
HPARAMS metrics :func:`final_scalars`, the report) goes through :data:`FIELDS`, so a new field is one row here.

Records carry ``schema`` = :data:`SCHEMA`; lines without it were written before the key existed (schema 1, the same
keys otherwise). Readers treat every key as optional: a missing or ``null`` value is simply not shown.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch

__all__ = ["FIELDS", "SCHEMA", "Field", "charts", "final_scalars", "flatten", "number", "plain", "scalars"]

SCHEMA = 4
"""Version of the record's keys: 3 added the regularity stage's keys (``outlier_candidates``, ``count_status``,
``edge_regular``, ``tail_alpha``, ``tail_k``, ``edge_residual``, ``outlier_localisation``); 2 added ``schema`` itself
(and ``edge_error``); 1 is a record without it."""


class Field(NamedTuple):
    """One key of the record and where it shows.

    Attributes:
        key: the JSON key.
        value: how to read it from an analysis (``None``: a run field the caller gives).
        tag: TensorBoard tag under ``spectrum/<param>/``; ``{i}`` (and ``{j}``) for the entries of a list (matrix);
            ``None``: not a scalar.
        top_k: log only the first ``log_top_k`` entries (rows) of a list (matrix).
        chart: ``(title, line)`` of the custom-scalars chart (and its line) that plots the tag.
        final: HPARAMS metric tag under ``final/<param>/`` (``{i}`` for a list), or ``None``.
        id_tag: a second TensorBoard tag per outlier *id* (``{id}``, and ``{j}`` for a matrix row): the entries of a
            per-outlier list zipped with ``outlier_ids``, so a spike's curve stays continuous when ranks swap.
    """

    key: str
    value: Callable[[Any], object] | None = None
    tag: str | None = None
    top_k: bool = False
    chart: tuple[str, int] | None = None
    final: str | None = None
    id_tag: str | None = None


def _tolist(x: Any) -> object:
    return None if x is None else x.tolist()


def _two_layer(get: Callable[[Any], object]) -> Callable[[Any], object]:
    return lambda an: None if an.two_layer is None else get(an.two_layer)


def _prediction(get: Callable[[Any], object]) -> Callable[[Any], object]:
    # the theorem where it holds, and past two steps the stated extension (its note says so)
    return lambda an: (get(an.prediction) if an.prediction is not None
                       and (an.prediction.within_theory or an.prediction.extension) else None)


def _alignment(get: Callable[[Any], object]) -> Callable[[Any], object]:
    return lambda an: None if an.alignment is None else get(an.alignment)


def _regularity(get: Callable[[Any], object]) -> Callable[[Any], object]:
    return lambda an: None if getattr(an, "regularity", None) is None else get(an.regularity)


def _order(get: Callable[[Any], object]) -> Callable[[Any], object]:
    return lambda an: None if an.two_layer is None or an.two_layer.order is None else get(an.two_layer.order)


_COUNT = "outlier count: measured vs predicted"
_EDGES = "bulk edges and the outlier cut"
_ENERGY = "captured energy vs random baseline"
_TAIL = "tail exponent alpha (weightwatcher's convention) and edge regularity"

FIELDS: tuple[Field, ...] = (
    Field("step", final="step"),
    Field("eta", tag="eta"),
    Field("param"),
    Field("N"),
    Field("d"),
    Field("aspect_ratio"),
    Field("schema", lambda an: SCHEMA),
    Field("singular_values", lambda an: an.spectrum.values.tolist(), "singular_value_{i}", top_k=True),
    Field("bulk_edge", lambda an: an.outliers.bulk_edge, "bulk_edge", chart=(_EDGES, 0)),
    Field("bulk_edge_mp", lambda an: an.outliers.bulk_edge_mp, "bulk_edge_mp", chart=(_EDGES, 0)),
    Field("bulk_edge_theory", lambda an: an.outliers.bulk_edge_theory, "bulk_edge_theory", chart=(_EDGES, 0)),
    Field("top_bulk_value", lambda an: an.outliers.top_bulk_value, "top_bulk_value", chart=(_EDGES, 1)),
    Field("edge_scale", lambda an: an.outliers.edge_scale, "edge_scale"),
    Field("edge_error", lambda an: an.outliers.edge_error, "edge_error"),
    Field("margin", lambda an: an.outliers.margin, "margin"),
    Field("cut", lambda an: an.outliers.cut, "cut", chart=(_EDGES, 1)),
    Field("edge_method", lambda an: an.outliers.method),
    Field("outliers", lambda an: an.outliers.count, "outliers", chart=(_COUNT, 0), final="outliers"),
    Field("outliers_marginal", lambda an: an.outliers.marginal, "outliers_marginal", chart=(_COUNT, 0),
          final="outliers_marginal"),
    Field("outlier_candidates", _regularity(lambda r: r.candidates)),
    Field("count_status", _regularity(lambda r: r.status)),
    Field("edge_regular", _regularity(lambda r: r.edge_regular), "edge_regular", chart=(_TAIL, 1)),
    Field("tail_alpha", _regularity(lambda r: r.tail_alpha), "tail_alpha", chart=(_TAIL, 0), final="tail_alpha"),
    Field("tail_k", _regularity(lambda r: r.tail_k)),
    Field("edge_residual", _regularity(lambda r: r.edge_residual), "edge_residual"),
    Field("outlier_localisation", _regularity(lambda r: r.localisation)),
    Field("outliers_deflated", _two_layer(lambda tl: tl.outliers_deflated), "outliers_deflated", chart=(_COUNT, 0),
          final="outliers_deflated"),
    Field("outlier_values", lambda an: an.outliers.values, "outlier_value_{i}", top_k=True,
          chart=("outlier locations", 0), id_tag="outlier_id/{id}/value"),
    Field("outlier_ids", lambda an: an.identities.ids),
    Field("outlier_births", lambda an: an.identities.births),
    Field("ended_outliers", lambda an: [{"id": i, "birth": b, "last_step": an.identities.last_step}
                                        for i, b in zip(an.identities.ended, an.identities.ended_births)]),
    Field("outlier_status", lambda an: an.outliers.status),
    Field("outlier_gaps", lambda an: an.outliers.gaps),
    Field("outlier_margins", lambda an: an.outliers.margins, "outlier_margin_{i}", top_k=True),
    Field("outlier_predicted_locations",
          lambda an: None if an.two_layer is None else an.two_layer.outlier_predicted_locations(an.outliers.count),
          id_tag="outlier_id/{id}/predicted"),
    Field("predicted_outliers", _prediction(lambda p: p.total), "predicted_outliers", chart=(_COUNT, 1),
          final="predicted_outliers"),
    Field("predicted_outliers_deflated", _prediction(lambda p: p.deflated), "predicted_outliers_deflated"),
    Field("predicted_outliers_finite_n", _two_layer(lambda tl: None if tl.finite_n is None else tl.finite_n.count),
          "predicted_outliers_finite_n", chart=(_COUNT, 1), final="predicted_outliers_finite_n"),
    Field("predicted_locations", _two_layer(lambda tl: tl.predicted_locations())),
    Field("comparator_coverage", _two_layer(lambda tl: tl.coverage), "comparator_coverage"),
    Field("comparator_strengths", _two_layer(lambda tl: None if tl.finite_n is None else tl.finite_n.strengths)),
    Field("comparator_critical_strength",
          _two_layer(lambda tl: None if tl.finite_n is None else tl.finite_n.critical_strength),
          "comparator_critical_strength"),
    Field("comparator_basis_size", _two_layer(lambda tl: tl.basis_size)),
    Field("comparator_bulk", _two_layer(lambda tl: tl.bulk_source)),
    Field("alignment", _alignment(lambda al: al.overlaps.tolist()), "alignment/outlier_{i}/beta_{j}", top_k=True,
          id_tag="outlier_id/{id}/beta_{j}"),
    Field("captured_energy", _alignment(lambda al: al.captured_energy.tolist()), "alignment/beta_{i}",
          chart=(_ENERGY, 0), final="captured_energy/beta_{i}"),
    Field("captured_energy_baseline", _alignment(lambda al: al.baseline), "alignment/baseline", chart=(_ENERGY, 0),
          final="captured_energy_baseline"),
    Field("left_alignment", _two_layer(lambda tl: tl.left_alignment.tolist())),
    Field("order_strengths", _order(lambda o: o.strengths.tolist()), "order_strength/k{i}",
          chart=("order-k strengths", 0)),
    Field("order_alignment", _order(lambda o: _tolist(o.alignment)), "order_alignment/k{i}/beta_{j}"),
    Field("theory_note", lambda an: "; ".join(an.notes) if an.notes else None),
    Field("noise_scale", lambda an: an.outliers.noise_scale, "noise_scale"),
    Field("residuals", lambda an: an.spectrum.residuals),
    Field("matvecs", lambda an: an.spectrum.matvecs + (an.two_layer.matvecs if an.two_layer is not None else 0)),
    Field("converged", lambda an: an.spectrum.converged),
    Field("analysis_seconds", tag="analysis_seconds"),
    Field("rank"),
)
"""Every key of the record, in the order of a ``spectra.jsonl`` line."""


def number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (booleans, strings, ``None``, NaN and infinities are not numbers).

    Example:
        >>> number(3), number(float("nan")), number(True), number("1")
        (3.0, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def plain(value: Any) -> Any:
    """A JSON-safe copy of ``value``: non-finite floats become ``None`` (JSON has no NaN), tensors and tuples lists,
    numpy scalars Python numbers, mapping keys strings.

    Example:
        >>> plain({"a": [1.0, float("inf"), (float("nan"), 2)], 3: torch.tensor([0.5])})
        {'a': [1.0, None, [None, 2]], '3': [0.5]}
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (int, str, bool)):  # numpy scalars
        return plain(value.item())
    return value


def flatten(analysis: Any, **run: Any) -> dict[str, Any]:
    """The record of one analysis: :data:`FIELDS` in order, each run field (``step``, ``param``, …) where given.

    Args:
        analysis: an :class:`~spikelearn.functional.engine.Analysis`.
        **run: the run's own fields (keys of :data:`FIELDS` without a ``value``); unknown keys are refused.

    Raises:
        ValueError: naming a keyword that is not a run field.
    """
    known = {f.key for f in FIELDS if f.value is None}
    unknown = sorted(set(run) - known)
    if unknown:
        raise ValueError(f"run fields must be among {sorted(known)}, got {unknown}.")
    out: dict[str, Any] = {}
    for field in FIELDS:
        if field.value is None:
            if field.key in run:
                out[field.key] = plain(run[field.key])
            continue
        out[field.key] = plain(field.value(analysis))
    return out


def scalars(record: Mapping[str, Any], top_k: int = 8) -> dict[str, float]:
    """TensorBoard scalars of one record under ``spectrum/<param>/``, one per :data:`FIELDS` tag (null skipped).

    Example:
        >>> scalars({"param": "W", "outliers": 1, "captured_energy": [0.9], "predicted_outliers": None})
        {'spectrum/W/outliers': 1.0, 'spectrum/W/alignment/beta_0': 0.9}
    """
    prefix = f"spectrum/{record['param']}/"
    out: dict[str, float] = {}
    ids = record.get("outlier_ids")
    for field in FIELDS:
        pairs = [] if field.tag is None else _entries(field.tag, record.get(field.key), top_k if field.top_k else None)
        if field.id_tag is not None and isinstance(ids, list):
            pairs += _id_entries(field.id_tag, record.get(field.key), ids)
        for tag, value in pairs:
            value = float(value) if isinstance(value, bool) else number(value)  # a flag is drawn as 0 / 1
            if value is not None:
                out[prefix + tag] = value
    return out


def _id_entries(tag: str, value: Any, ids: list[Any]) -> list[tuple[str, Any]]:
    """``(tag, value)`` per outlier id: a per-outlier list (or matrix, ``{j}``) zipped with ``outlier_ids``."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    rows = list(zip(ids, value))
    if "{j}" not in tag:
        return [(tag.format(id=i), v) for i, v in rows]
    return [(tag.format(id=i, j=j), v) for i, row in rows if isinstance(row, Sequence) for j, v in enumerate(row)]


def final_scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """HPARAMS metrics of a weight's last record, under ``final/<param>/`` (:data:`FIELDS` ``final``).

    Example:
        >>> final_scalars({"param": "W", "step": 2, "outliers": 3, "captured_energy": [0.5]})
        {'final/W/step': 2.0, 'final/W/outliers': 3.0, 'final/W/captured_energy/beta_0': 0.5}
    """
    prefix = f"final/{record.get('param', 'W')}/"
    out: dict[str, float] = {}
    for field in FIELDS:
        if field.final is None:
            continue
        for tag, value in _entries(field.final, record.get(field.key), None):
            value = number(value)
            if value is not None:
                out[prefix + tag] = value
    return out


def charts(param: str) -> dict[str, list[str]]:
    r"""Custom-scalars charts of one weight: title -> one regular expression per line (tags of :data:`FIELDS`).

    Example:
        >>> charts("W")["outlier count: measured vs predicted"][0]
        '^spectrum/W/(outliers|outliers_marginal|outliers_deflated)$'
        >>> charts("W")["order-k strengths"]
        ['^spectrum/W/order_strength/k\\d+$']
    """
    lines: dict[str, dict[int, list[str]]] = {}
    for field in FIELDS:
        if field.chart is None or field.tag is None:
            continue
        title, line = field.chart
        pattern = re.escape(field.tag).replace(r"\{i\}", r"\d+").replace(r"\{j\}", r"\d+")
        lines.setdefault(title, {}).setdefault(line, []).append(pattern.replace("\\/", "/"))
    p = re.escape(param)
    out: dict[str, list[str]] = {}
    for title, by_line in lines.items():
        out[title] = [
            f"^spectrum/{p}/{members[0]}$" if len(members) == 1 else f"^spectrum/{p}/({'|'.join(members)})$"
            for _, members in sorted(by_line.items())
        ]
    return out


def _entries(tag: str, value: Any, top_k: int | None) -> list[tuple[str, Any]]:
    """``(tag, value)`` pairs of a scalar, a list (``{i}``) or a matrix (``{i}``, ``{j}``) field."""
    if "{i}" not in tag:
        return [(tag, value)]
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    rows = value if top_k is None else value[:top_k]
    if "{j}" not in tag:
        return [(tag.format(i=i), v) for i, v in enumerate(rows)]
    return [(tag.format(i=i, j=j), v) for i, row in enumerate(rows) if isinstance(row, Sequence)
            for j, v in enumerate(row)]
