r"""Figures of a spectrum: the bulk against Marchenko–Pastur, and the outliers against their cut.

A figure takes the values to draw and the record (a ``spectra.jsonl`` line) whose fields it marks, so the monitor,
scripts and the report share it. Symbols as in SPEC §3–4:
``W`` of shape ``(N, d)``, ``c = N / d``, singular values :math:`s_1 \ge s_2 \ge \dots`, noise scale
:math:`\hat s`, bulk edge :math:`\hat s_+`, Tracy–Widom margin ``m``, cut :math:`\hat s_+ + m`.
Matplotlib is used through :class:`matplotlib.figure.Figure` (no pyplot state, no display needed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
from torch import Tensor

from spikelearn.functional.record import number
from spikelearn.functional.rmt import mp_bulk_edge, mp_singular_density

__all__ = ["render_figure", "spectrum_figure", "write_png"]

_Values = Sequence[float] | Tensor


def _floats(values: _Values | None) -> list[float]:
    if values is None:
        return []
    if isinstance(values, Tensor):
        return [float(v) for v in values.detach().cpu().flatten().tolist()]
    return [float(v) for v in values if v is not None]


def render_figure(fig: Figure, dpi: float = 110) -> np.ndarray:
    """Draw ``fig`` once with Agg and return its pixels, ``(height, width, 4)`` uint8 RGBA.

    One draw serves both the PNG file (:func:`write_png`) and TensorBoard (``add_image(..., dataformats="HWC")``):
    ``savefig`` followed by TensorBoard's ``add_figure`` would lay out and rasterise the figure twice.
    """
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def write_png(path: str | os.PathLike[str], pixels: np.ndarray) -> None:
    """Write RGBA ``pixels`` (``(H, W, 4)`` uint8) as a PNG file, atomically (temporary file, fsync, rename)."""
    import matplotlib.image

    from spikelearn._atomic import atomic_write

    atomic_write(path, lambda handle: matplotlib.image.imsave(handle, pixels, format="png"))

class _Marks(NamedTuple):
    """What a spectrum figure draws besides the values, read once from a record (``None``: not drawn)."""

    N: int
    d: int
    c: float
    scale: float
    edge_theory: float
    bulk_edge: float | None
    bulk_edge_mp: float | None
    cut: float | None
    outliers: list[float]
    status: list[str]
    predicted: list[float]


def _marks(record: Mapping[str, Any]) -> _Marks:
    N, d = record.get("N"), record.get("d")
    for name, value in (("N", N), ("d", d)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"record field `{name}` must be a positive integer, got {value!r}.")
    bulk_edge, margin = number(record.get("bulk_edge")), number(record.get("margin"))
    c = N / d
    return _Marks(
        N=N, d=d, c=c, scale=number(record.get("noise_scale")) or 1.0, edge_theory=mp_bulk_edge(c),
        bulk_edge=bulk_edge, bulk_edge_mp=number(record.get("bulk_edge_mp")),
        cut=bulk_edge + margin if bulk_edge is not None and margin is not None else None,
        outliers=sorted(_floats(record.get("outlier_values")), reverse=True),
        status=[str(x) for x in (record.get("outlier_status") or [])],
        predicted=sorted(_floats(record.get("predicted_locations")), reverse=True),
    )


def spectrum_figure(singular_values: _Values, record: Mapping[str, Any], *, bins: int = 60) -> Figure:
    r"""Two panels: the empirical spectral density with the Marchenko–Pastur density, and the top values.

    Left: histogram of the singular values in the bulk region, the MP singular-value density
    :math:`q(x)` at scale :math:`\hat s`, the theoretical edge :math:`1 + \sqrt c`, the measured edge
    :math:`\hat s_+` and the Tracy–Widom cut. Right: the top values by rank (log scale), outliers
    highlighted (marginal ones hollow, orange), the BGN predicted locations (where known) as hollow triangles beside
    them, and the counts (measured and predicted). The aspect ratio ``c = N/d`` is printed on the plot.

    Args:
        singular_values: descending singular values; the full spectrum (``min(N, d)`` values) gives the
            histogram, fewer give only the right panel's points and a rug.
        record: the analysis's record (a ``spectra.jsonl`` line): ``N`` and ``d`` are required; ``bulk_edge``,
            ``margin``, ``noise_scale``, ``bulk_edge_mp``, ``outlier_values``, ``outlier_status``,
            ``predicted_locations``, the counts, ``step``, ``eta`` and ``param`` are drawn when present.
        bins: histogram bins over the bulk window.

    Returns:
        A :class:`matplotlib.figure.Figure` (save with ``fig.savefig(path)``).

    Raises:
        ValueError: if ``N`` or ``d`` is not a positive integer or no values are given.

    Example:
        >>> W = torch.randn(200, 100, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 10
        >>> fig = spectrum_figure(torch.linalg.svdvals(W), {"N": 200, "d": 100, "bulk_edge": 2.4, "margin": 0.05})
        >>> [ax.get_title() for ax in fig.axes][0]
        'W: singular values (c = N/d = 2)'
    """
    marks = _marks(record)
    values = sorted(_floats(singular_values), reverse=True)
    if not values:
        raise ValueError("`singular_values` must hold at least one value.")
    fig = Figure(figsize=(11.0, 4.2))
    fig.subplots_adjust(left=0.055, right=0.985, bottom=0.12, top=0.92, wspace=0.16)
    ax_bulk, ax_top = fig.subplots(1, 2, width_ratios=(3, 2))
    _bulk_panel(ax_bulk, values, marks, bins)
    ax_bulk.set_title(f"{record.get('param', 'W')}: singular values (c = N/d = {marks.c:.3g})")
    _top_panel(ax_top, values, marks)
    lines = [f"c = N/d = {marks.N}/{marks.d} = {marks.c:.3g}",
             f"measured: {len(marks.outliers) if marks.outliers else _count_above(values, marks.cut)} outliers"]
    if isinstance(record.get("outliers_deflated"), int):
        lines[-1] += f" ({record['outliers_deflated']} deflated)"
    predicted, finite_n = record.get("predicted_outliers"), record.get("predicted_outliers_finite_n")
    if predicted is not None or finite_n is not None:
        fmt = lambda v: "–" if v is None else str(v)  # noqa: E731
        lines.append(f"predicted: {fmt(predicted)} asymptotic / {fmt(finite_n)} finite-N")
    ax_top.text(0.97, 0.97, "\n".join(lines), transform=ax_top.transAxes, ha="right", va="top", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85})
    title = "top singular values"
    if record.get("step") is not None:
        title += f", step {record['step']}"
    eta = number(record.get("eta"))
    if eta is not None:
        title += f", η = {eta:.3g}"
    ax_top.set_title(title)
    ax_top.legend(fontsize=8, loc="center right")  # the bulk sits low and left on the log axis
    return fig


def _count_above(values: list[float], cut: float | None) -> int:
    return 0 if cut is None else sum(v > cut for v in values)


def _bulk_panel(ax: Any, values: list[float], marks: _Marks, bins: int) -> None:
    """The bulk against Marchenko–Pastur at :math:`\\hat s`, the edges and the cut, with a zoom at the edge."""
    m = marks
    x_max = 1.3 * max(m.edge_theory, m.scale * m.edge_theory, m.cut or 0.0, m.bulk_edge or 0.0)
    inside = [v for v in values if v <= x_max]
    if len(values) >= min(m.N, m.d) and inside:
        width = x_max / bins
        weight = 1.0 / (len(values) * width)  # density over all min(N, d) values, like q(x)
        ax.hist(inside, bins=bins, range=(0.0, x_max), weights=[weight] * len(inside), color="0.75", label="ESD")
    else:
        ax.plot(inside, [0.0] * len(inside), "|", color="0.4", markersize=12, label="top values")
    grid = torch.linspace(0.0, x_max, 600, dtype=torch.float64)
    ax.plot(grid, mp_singular_density(grid, m.c, m.scale), color="C0", lw=1.8, label=f"MP, $\\hat s$ = {m.scale:.3g}")
    ax.axvline(m.edge_theory, color="0.3", ls="--", lw=1.2, label=f"1+√c = {m.edge_theory:.3f}")
    if m.bulk_edge_mp is not None:
        ax.axvline(m.bulk_edge_mp, color="C0", ls="-.", lw=1.0, label=f"MP edge at $\\hat s$ = {m.bulk_edge_mp:.3f}")
    if m.bulk_edge is not None:
        ax.axvline(m.bulk_edge, color="k", lw=1.2, label=f"fitted edge = {m.bulk_edge:.3f}")
    if m.cut is not None:
        ax.axvline(m.cut, color="C3", ls=":", lw=1.5, label=f"TW cut = {m.cut:.3f}")
    beyond = len(values) - len(inside)
    if beyond:
        ax.annotate(f"{beyond} larger value(s) off this axis →", xy=(0.98, 0.22), xycoords="axes fraction",
                    ha="right", color="C3",
                    bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "C3", "alpha": 0.9})
    if m.cut is not None and m.bulk_edge is not None:
        _edge_zoom(ax, values, m.outliers, status_of=m.status, lines=[
            (m.edge_theory, "0.3", "--"), (m.bulk_edge_mp, "C0", "-."), (m.bulk_edge, "k", "-"), (m.cut, "C3", ":"),
        ], margin=m.cut - m.bulk_edge)
    ax.set_xlim(0.0, x_max)
    ax.set_xlabel("singular value")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper left")


def _top_panel(ax: Any, values: list[float], marks: _Marks) -> None:
    """The top values by rank (log scale): bulk grey, clear outliers red, marginal hollow orange, BGN triangles."""
    m = marks
    top = values[: max(16, min(len(values), len(m.outliers) + 8, 32))]
    ranks = list(range(1, len(top) + 1))
    is_out = [m.cut is not None and v > m.cut for v in top] if not m.outliers else [i < len(m.outliers) for i in range(len(top))]
    ax.scatter([r for r, o in zip(ranks, is_out) if not o], [v for v, o in zip(top, is_out) if not o], s=14,
               color="0.5", label="bulk")
    marginal = [i < len(m.status) and m.status[i] == "marginal" for i in range(len(top))]
    ax.scatter(
        [r for r, o, g in zip(ranks, is_out, marginal) if o and not g],
        [v for v, o, g in zip(top, is_out, marginal) if o and not g], s=30, color="C3",
        label=f"outliers ({sum(o and not g for o, g in zip(is_out, marginal))} clear)",
    )
    if any(marginal):
        ax.scatter([r for r, g in zip(ranks, marginal) if g], [v for v, g in zip(top, marginal) if g], s=34,
                   facecolors="none", edgecolors="C1", linewidths=1.5, label=f"marginal ({sum(marginal)})")
    if m.predicted:
        ax.scatter([r + 0.25 for r in range(1, len(m.predicted) + 1)], m.predicted, s=40, marker="^",
                   facecolors="none", edgecolors="k", label="BGN prediction")
    ax.axhline(m.edge_theory, color="0.3", ls="--", lw=1.0, label="1+√c")
    if m.bulk_edge is not None:
        ax.axhline(m.bulk_edge, color="k", lw=1.0, label="fitted edge")
    if m.cut is not None:
        ax.axhline(m.cut, color="C3", ls=":", lw=1.2, label="cut")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("rank i")
    ax.set_ylabel("$s_i$")


def _edge_zoom(
    ax: object, values: list[float], outliers: list[float], *, status_of: list[str],
    lines: list[tuple[float | None, str, str]], margin: float,
) -> None:
    """Inset at the bulk edge, where 1+√c, the MP edge, the fitted edge and the cut sit within a few percent:
    the top values as a rug (bulk grey, clear outliers red, marginal orange) and the four lines."""
    levels = [x for x, _, _ in lines if x is not None]
    width = max(max(levels) - min(levels), 4.0 * max(margin, 1e-12))
    lo, hi = min(levels) - 0.6 * width, max(levels) + 1.2 * width
    inset = ax.inset_axes((0.66, 0.64, 0.32, 0.27))
    near = [v for v in values if lo <= v <= hi]
    colours = []
    for v in near:
        if v in outliers:
            i = outliers.index(v)
            colours.append("C1" if i < len(status_of) and status_of[i] == "marginal" else "C3")
        else:
            colours.append("0.45")
    inset.vlines(near, 0.0, 1.0, colors=colours, lw=1.0)
    for x, colour, style in lines:
        if x is not None:
            inset.axvline(x, color=colour, ls=style, lw=1.3)
    inset.set_xlim(lo, hi)
    inset.set_yticks([])
    inset.tick_params(labelsize=7)
    inset.set_title("zoom at the edge: top values", fontsize=7)
