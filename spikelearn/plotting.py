r"""Figures of a spectrum: the bulk against Marchenko–Pastur, and the outliers against their cut.

Plain inputs (lists or tensors of numbers), so scripts and callbacks share them. Symbols as in SPEC §3–4:
``W`` of shape ``(N, d)``, ``c = N / d``, singular values :math:`s_1 \ge s_2 \ge \dots`, noise scale
:math:`\hat s`, bulk edge :math:`\hat s_+`, Tracy–Widom margin ``m``, cut :math:`\hat s_+ + m`.
Matplotlib is used through :class:`matplotlib.figure.Figure` (no pyplot state, no display needed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
from torch import Tensor

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

def spectrum_figure(
    singular_values: _Values,
    *,
    N: int,
    d: int,
    bulk_edge: float | None = None,
    margin: float | None = None,
    noise_scale: float | None = None,
    outlier_values: _Values | None = None,
    outlier_status: Sequence[str] | None = None,
    bulk_edge_mp: float | None = None,
    predicted_locations: _Values | None = None,
    predicted_outliers: int | None = None,
    predicted_outliers_finite_n: int | None = None,
    outliers_deflated: int | None = None,
    step: int | None = None,
    eta: float | None = None,
    param: str = "W",
    bins: int = 60,
) -> Figure:
    r"""Two panels: the empirical spectral density with the Marchenko–Pastur density, and the top values.

    Left: histogram of the singular values in the bulk region, the MP singular-value density
    :math:`q(x)` at scale :math:`\hat s`, the theoretical edge :math:`1 + \sqrt c`, the measured edge
    :math:`\hat s_+` and the Tracy–Widom cut. Right: the top values by rank (log scale), outliers
    highlighted, the BGN predicted locations (where known) as hollow triangles beside them, and the
    counts (measured and predicted). The aspect ratio ``c = N/d`` is printed on the plot.

    Args:
        singular_values: descending singular values; the full spectrum (``min(N, d)`` values) gives the
            histogram, fewer give only the right panel's points and a rug.
        N: rows of ``W``.
        d: columns of ``W``.
        bulk_edge: measured edge :math:`\hat s_+` (``None``: not drawn).
        margin: Tracy–Widom margin ``m`` (the cut is drawn when both are known).
        noise_scale: :math:`\hat s` for the MP density (default 1).
        outlier_values: the measured outliers.
        outlier_status: per outlier ``"clear"`` or ``"marginal"``; marginal ones are drawn hollow (orange).
        bulk_edge_mp: the Marchenko–Pastur edge :math:`\hat s(1+\sqrt c)` at the fitted noise scale.
        predicted_locations: BGN locations of the predicted outliers.
        predicted_outliers: asymptotic predicted count.
        predicted_outliers_finite_n: finite-N predicted count.
        outliers_deflated: measured count after removing the first-step direction.
        step: ``t`` for the title.
        eta: ``η_t`` for the title.
        param: weight name for the title.
        bins: histogram bins over the bulk window.

    Returns:
        A :class:`matplotlib.figure.Figure` (save with ``fig.savefig(path)``).

    Raises:
        ValueError: if ``N`` or ``d`` is not positive or no values are given.

    Example:
        >>> W = torch.randn(200, 100, generator=torch.Generator().manual_seed(0), dtype=torch.float64) / 10
        >>> fig = spectrum_figure(torch.linalg.svdvals(W), N=200, d=100, bulk_edge=2.4, margin=0.05)
        >>> [ax.get_title() for ax in fig.axes][0]
        'W: singular values (c = N/d = 2)'
    """
    for name, value in (("N", N), ("d", d)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    values = sorted(_floats(singular_values), reverse=True)
    if not values:
        raise ValueError("`singular_values` must hold at least one value.")
    c = N / d
    scale = float(noise_scale) if noise_scale else 1.0
    edge_theory = mp_bulk_edge(c)
    cut = bulk_edge + margin if bulk_edge is not None and margin is not None else None
    outliers = sorted(_floats(outlier_values), reverse=True)
    predicted = sorted(_floats(predicted_locations), reverse=True)
    full = len(values) >= min(N, d)

    fig = Figure(figsize=(11.0, 4.2))
    fig.subplots_adjust(left=0.055, right=0.985, bottom=0.12, top=0.92, wspace=0.16)
    ax_bulk, ax_top = fig.subplots(1, 2, width_ratios=(3, 2))

    # ---- left: the bulk against Marchenko-Pastur
    reference = max(edge_theory, scale * edge_theory, cut or 0.0, bulk_edge or 0.0)
    x_max = 1.3 * reference
    inside = [v for v in values if v <= x_max]
    if full and inside:
        width = x_max / bins
        weight = 1.0 / (len(values) * width)  # density over all min(N, d) values, like q(x)
        ax_bulk.hist(inside, bins=bins, range=(0.0, x_max), weights=[weight] * len(inside), color="0.75", label="ESD")
    else:
        ax_bulk.plot(inside, [0.0] * len(inside), "|", color="0.4", markersize=12, label="top values")
    grid = torch.linspace(0.0, x_max, 600, dtype=torch.float64)
    ax_bulk.plot(grid, mp_singular_density(grid, c, scale), color="C0", lw=1.8, label=f"MP, $\\hat s$ = {scale:.3g}")
    ax_bulk.axvline(edge_theory, color="0.3", ls="--", lw=1.2, label=f"1+√c = {edge_theory:.3f}")
    if bulk_edge_mp is not None:
        ax_bulk.axvline(bulk_edge_mp, color="C0", ls="-.", lw=1.0, label=f"MP edge at $\\hat s$ = {bulk_edge_mp:.3f}")
    if bulk_edge is not None:
        ax_bulk.axvline(bulk_edge, color="k", lw=1.2, label=f"fitted edge = {bulk_edge:.3f}")
    if cut is not None:
        ax_bulk.axvline(cut, color="C3", ls=":", lw=1.5, label=f"TW cut = {cut:.3f}")
    beyond = len(values) - len(inside)
    if beyond:
        ax_bulk.annotate(f"{beyond} larger value(s) off this axis →", xy=(0.98, 0.22), xycoords="axes fraction", ha="right", color="C3",
                         bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "C3", "alpha": 0.9})
    if cut is not None and bulk_edge is not None:
        _edge_zoom(ax_bulk, values, outliers, status_of=list(outlier_status or []), lines=[
            (edge_theory, "0.3", "--"), (bulk_edge_mp, "C0", "-."), (bulk_edge, "k", "-"), (cut, "C3", ":"),
        ], margin=cut - bulk_edge)
    ax_bulk.set_xlim(0.0, x_max)
    ax_bulk.set_xlabel("singular value")
    ax_bulk.set_ylabel("density")
    ax_bulk.set_title(f"{param}: singular values (c = N/d = {c:.3g})")
    ax_bulk.legend(fontsize=8, loc="upper left")

    # ---- right: the top values, outliers and predictions
    top = values[: max(16, min(len(values), len(outliers) + 8, 32))]
    ranks = list(range(1, len(top) + 1))
    is_out = [cut is not None and v > cut for v in top] if not outliers else [i < len(outliers) for i in range(len(top))]
    ax_top.scatter(
        [r for r, o in zip(ranks, is_out) if not o], [v for v, o in zip(top, is_out) if not o], s=14, color="0.5",
        label="bulk",
    )
    status = list(outlier_status or [])
    marginal = [i < len(status) and status[i] == "marginal" for i in range(len(top))]
    ax_top.scatter(
        [r for r, o, m in zip(ranks, is_out, marginal) if o and not m],
        [v for v, o, m in zip(top, is_out, marginal) if o and not m], s=30, color="C3",
        label=f"outliers ({sum(o and not m for o, m in zip(is_out, marginal))} clear)",
    )
    if any(marginal):
        ax_top.scatter(
            [r for r, m in zip(ranks, marginal) if m], [v for v, m in zip(top, marginal) if m], s=34,
            facecolors="none", edgecolors="C1", linewidths=1.5, label=f"marginal ({sum(marginal)})",
        )
    if predicted:
        ax_top.scatter(
            [r + 0.25 for r in range(1, len(predicted) + 1)], predicted, s=40, marker="^", facecolors="none",
            edgecolors="k", label="BGN prediction",
        )
    ax_top.axhline(edge_theory, color="0.3", ls="--", lw=1.0, label="1+√c")
    if bulk_edge is not None:
        ax_top.axhline(bulk_edge, color="k", lw=1.0, label="fitted edge")
    if cut is not None:
        ax_top.axhline(cut, color="C3", ls=":", lw=1.2, label="cut")
    ax_top.set_yscale("log")
    ax_top.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax_top.yaxis.set_major_formatter(ScalarFormatter())
    ax_top.yaxis.set_minor_formatter(NullFormatter())
    ax_top.set_xlabel("rank i")
    ax_top.set_ylabel("$s_i$")
    lines = [f"c = N/d = {N}/{d} = {c:.3g}", f"measured: {len(outliers) if outliers else sum(is_out)} outliers"]
    if outliers_deflated is not None:
        lines[-1] += f" ({outliers_deflated} deflated)"
    if predicted_outliers is not None or predicted_outliers_finite_n is not None:
        fmt = lambda v: "–" if v is None else str(v)  # noqa: E731
        lines.append(f"predicted: {fmt(predicted_outliers)} asymptotic / {fmt(predicted_outliers_finite_n)} finite-N")
    ax_top.text(0.97, 0.97, "\n".join(lines), transform=ax_top.transAxes, ha="right", va="top", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85})
    title = "top singular values"
    if step is not None:
        title += f", step {step}"
    if eta is not None and math.isfinite(eta):
        title += f", η = {eta:.3g}"
    ax_top.set_title(title)
    ax_top.legend(fontsize=8, loc="center right")  # the bulk sits low and left on the log axis
    return fig


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
