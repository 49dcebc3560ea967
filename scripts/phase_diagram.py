r"""Phase diagram of the two-step outlier count over :math:`(\alpha_1, \alpha_2) \in [0, 1/2)^2`.

For every cell, batch mode (independent / reused), width ``N`` and seed, two full-batch steps
:math:`\eta_t = c_t N^{\alpha_t}` are trained with :class:`~spikelearn.module.TwoLayerModule` and
:class:`spikelearn.callbacks.SpectrumMonitor` records step 2: the measured outlier count of ``W_2`` (total and
after deflating the first spike), the asymptotic prediction :math:`1 + \lfloor \alpha_2/(1/2-\alpha_1)\rfloor`
and the finite-N predicted count (SPEC §4). The heatmaps draw the law's boundaries
:math:`\alpha_2 = k(1/2 - \alpha_1)` on every panel; cells where the measured count differs from the finite-N
prediction are outlined in red.

Outputs in ``--out``: ``phase_diagram_runs.csv`` (one row per run), ``phase_diagram.csv`` (one row per cell,
seeds averaged) and ``phase_diagram.png``.

    python scripts/phase_diagram.py                      # N = 512, 6 x 6 grid, 2 seeds, both modes (~40 s on 2 shared CPU cores)
    python scripts/phase_diagram.py --N 1024 2048 --seeds 3 --out outputs/phase_large
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from spikelearn.callbacks import Cadence  # noqa: E402
from _common import (  # noqa: E402
    RunConfig,
    base_parser,
    draw_law_boundaries,
    finish_figure,
    progress,
    run,
    setup,
    spectrum_monitor,
    read_csv,
    write_csv,
)

from spikelearn.functional.theory import predicted_outlier_count  # noqa: E402

DEFAULT_ALPHA1 = (0.04, 0.12, 0.2, 0.28, 0.36, 0.44)
DEFAULT_ALPHA2 = (0.05, 0.13, 0.21, 0.29, 0.37, 0.45)
RUN_COLUMNS = (
    "N", "d", "n", "batches", "alpha1", "alpha2", "c1", "c2", "seed", "outliers", "outliers_deflated",
    "predicted_outliers", "predicted_outliers_deflated", "predicted_outliers_finite_n", "borderline",
    "outlier_values", "bulk_edge", "cut", "seconds",
)
CELL_COLUMNS = (
    "N", "batches", "alpha1", "alpha2", "seeds", "outliers_mean", "outliers_deflated_mean", "predicted_outliers",
    "predicted_outliers_deflated", "predicted_outliers_finite_n_mean", "match_finite_n", "match_asymptotic",
    "borderline",
)


def _parser():
    parser = base_parser("phase_diagram", __doc__.split("\n\n")[0], threads=1)
    parser.add_argument("--N", type=int, nargs="+", default=None, help="widths (d = N / aspect, n = psi d)")
    parser.add_argument("--alpha1", type=float, nargs="+", default=None, help="alpha_1 grid")
    parser.add_argument("--alpha2", type=float, nargs="+", default=None, help="alpha_2 grid")
    parser.add_argument("--batches", nargs="+", default=["independent", "reused"], choices=["independent", "reused"])
    parser.add_argument("--c", type=float, nargs=2, default=(1.0, 1.0), metavar=("C1", "C2"), help="constants c_1 c_2")
    parser.add_argument("--aspect", type=float, default=1.0, help="c = N/d")
    parser.add_argument("--psi", type=float, default=1.0, help="n/d")
    parser.add_argument("--target", default="he1")
    parser.add_argument("--from-csv", type=Path, default=None,
                        help="redraw from an earlier phase_diagram_runs.csv instead of training")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the grid; returns the per-cell rows (also written to ``phase_diagram.csv``)."""
    args = _parser().parse_args(argv)
    start = setup(args)
    widths = args.N or ([48] if args.quick else [512])
    alpha1 = args.alpha1 or ([0.1, 0.35] if args.quick else list(DEFAULT_ALPHA1))
    alpha2 = args.alpha2 or ([0.17, 0.42] if args.quick else list(DEFAULT_ALPHA2))
    seeds = args.seeds or (1 if args.quick else 2)
    grid = list(itertools.product(widths, args.batches, alpha1, alpha2, range(seeds)))
    runs: list[dict] = _read_runs(args.from_csv) if args.from_csv else []
    with tempfile.TemporaryDirectory(prefix="phase_") as scratch:
        for i, (N, batches, a1, a2, seed) in enumerate(progress([] if args.from_csv else grid, "phase diagram",
                                                                 not args.no_progress)):
            d = max(1, round(N / args.aspect))
            n = max(1, round(args.psi * d))
            config = RunConfig(model=dict(width=N, input_dim=d, step_c=tuple(args.c), step_alpha=(a1, a2), seed=seed),
                               data=dict(input_dim=d, batch_size=n, batches=batches, target=args.target, seed=seed),
                               precision=args.precision)
            monitor = spectrum_monitor(Path(scratch) / f"run{i}", analyses=Cadence(every_n_steps=2))
            t0 = time.perf_counter()
            run(config, [monitor])
            record = monitor.history[-1]  # step 2
            runs.append({
                "N": N, "d": d, "n": n, "batches": batches, "alpha1": a1, "alpha2": a2, "c1": args.c[0],
                "c2": args.c[1], "seed": seed, "outliers": record["outliers"],
                "outliers_deflated": record["outliers_deflated"],
                "predicted_outliers": record["predicted_outliers"],
                "predicted_outliers_deflated": record["predicted_outliers_deflated"],
                "predicted_outliers_finite_n": record["predicted_outliers_finite_n"],
                "borderline": predicted_outlier_count((a1, a2)).borderline,
                "outlier_values": record["outlier_values"], "bulk_edge": record["bulk_edge"], "cut": record["cut"],
                "seconds": time.perf_counter() - t0,
            })
    cells = _cells(runs)
    write_csv(runs, args.out / "phase_diagram_runs.csv")
    write_csv(cells, args.out / "phase_diagram.csv")
    _figure(cells, args)
    _report(cells, time.perf_counter() - start, args.out)
    return cells


def _mean(values) -> float | None:
    """Mean of the values that are not ``None`` (``None`` when none is)."""
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _read_runs(path: Path) -> list[dict]:
    return read_csv(path, ints=("N", "d", "n", "seed", "outliers", "outliers_deflated", "predicted_outliers",
                                "predicted_outliers_deflated", "predicted_outliers_finite_n"),
                    floats=("alpha1", "alpha2", "c1", "c2"), bools=("borderline",))


def _cells(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in runs:
        groups.setdefault((row["N"], row["batches"], row["alpha1"], row["alpha2"]), []).append(row)
    cells = []
    for (N, batches, a1, a2), rows in groups.items():
        asym = rows[0]["predicted_outliers"]
        cells.append({
            "N": N, "batches": batches, "alpha1": a1, "alpha2": a2, "seeds": len(rows),
            "outliers_mean": statistics.fmean(r["outliers"] for r in rows),
            "outliers_deflated_mean": statistics.fmean(r["outliers_deflated"] for r in rows),
            "predicted_outliers": asym,
            "predicted_outliers_deflated": rows[0]["predicted_outliers_deflated"],
            # over the seeds where the finite-N count applies (it is null, with its reason, where it does not)
            "predicted_outliers_finite_n_mean": _mean(r["predicted_outliers_finite_n"] for r in rows),
            # fraction of seeds whose measured total equals the finite-N / asymptotic prediction
            "match_finite_n": _mean(r["outliers"] == r["predicted_outliers_finite_n"] for r in rows
                                    if r["predicted_outliers_finite_n"] is not None),
            "match_asymptotic": statistics.fmean(r["outliers"] == asym for r in rows),
            "borderline": rows[0]["borderline"],
        })
    return cells


def _mean(values) -> float | None:
    """Mean of the values that are not ``None`` (``None`` when none is)."""
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _edges(values: list[float]) -> list[float]:
    values = sorted(values)
    if len(values) == 1:
        return [max(0.0, values[0] - 0.05), min(0.5, values[0] + 0.05)]
    mids = [(a + b) / 2 for a, b in zip(values, values[1:])]
    return [max(0.0, 2 * values[0] - mids[0]), *mids, min(0.5, 2 * values[-1] - mids[-1])]


def _figure(cells: list[dict], args) -> Path:
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    panels = (
        ("outliers_mean", "measured total"),
        ("outliers_deflated_mean", "measured, first spike deflated"),
        ("predicted_outliers", "asymptotic 1+⌊α2/(½−α1)⌋"),
        ("predicted_outliers_finite_n_mean", "finite-N predicted"),
    )
    keys = sorted({(c["N"], c["batches"]) for c in cells})
    a1s = sorted({c["alpha1"] for c in cells})
    a2s = sorted({c["alpha2"] for c in cells})
    e1, e2 = _edges(a1s), _edges(a2s)
    vmax = max(max(c["outliers_mean"], c["predicted_outliers"] or 0, c["predicted_outliers_finite_n_mean"]) for c in cells)
    fig = Figure(figsize=(3.2 * len(panels) + 0.8, 3.0 * len(keys) + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(keys), len(panels), squeeze=False))
    mesh = None
    for r, (N, batches) in enumerate(keys):
        mine = {(c["alpha1"], c["alpha2"]): c for c in cells if c["N"] == N and c["batches"] == batches}
        d = max(1, round(N / args.aspect))
        for col, (field_name, title) in enumerate(panels):
            ax = axes[r, col]
            Z = np.full((len(a2s), len(a1s)), np.nan)
            for (a1, a2), cell in mine.items():
                value = cell[field_name]
                Z[a2s.index(a2), a1s.index(a1)] = np.nan if value is None else value
            mesh = ax.pcolormesh(e1, e2, Z, cmap="viridis", vmin=0, vmax=vmax, shading="flat")
            for (a1, a2), cell in mine.items():
                value = cell[field_name]
                if value is not None:
                    ax.text(a1, a2, f"{value:.3g}", ha="center", va="center", fontsize=7,
                            color="w" if value < 0.6 * vmax else "k")
                if col == 0 and cell["match_finite_n"] is not None and cell["match_finite_n"] < 1:
                    i, j = a1s.index(a1), a2s.index(a2)
                    ax.add_patch(Rectangle((e1[i], e2[j]), e1[i + 1] - e1[i], e2[j + 1] - e2[j], fill=False,
                                           edgecolor="r", lw=1.6))
            draw_law_boundaries(ax, k_max=4, color="w", lw=0.8)  # k > 4 would pile up on the alpha1 = 0.44 column
            ax.set_title(f"{title}\nN={N}, d={d} (c=N/d={N / d:.3g}), {batches}", fontsize=8)
            ax.set_xlabel("α1", fontsize=8)
            ax.set_ylabel("α2", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.colorbar(mesh, ax=axes, shrink=0.8, label="outliers (seed mean)")
    fig.suptitle(f"Two-step outlier counts, c=({args.c[0]:g}, {args.c[1]:g}), target {args.target}; dashed: "
                 "α2 = k(½−α1), k = 1..4; red box: measured ≠ finite-N prediction (some seed)", fontsize=9)
    return finish_figure(fig, args.out / "phase_diagram.png", args.dpi)


def _report(cells: list[dict], seconds: float, out: Path) -> None:
    agree = sum(c["match_finite_n"] == 1 for c in cells)
    withheld = sum(c["match_finite_n"] is None for c in cells)
    print(f"phase diagram: {len(cells)} cells in {seconds:.1f} s; measured total == finite-N predicted in "
          f"{agree}/{len(cells)} cells (all seeds; withheld in {withheld}), == asymptotic in "
          f"{sum(c['match_asymptotic'] == 1 for c in cells)}/{len(cells)}")
    for c in cells:
        if c["match_finite_n"] is not None and c["match_finite_n"] < 1:
            print(f"  differs: N={c['N']} {c['batches']:<11} (a1, a2)=({c['alpha1']:.2f}, {c['alpha2']:.2f}) "
                  f"measured {c['outliers_mean']:.2f}, finite-N {c['predicted_outliers_finite_n_mean']:.2f}, "
                  f"asymptotic {c['predicted_outliers']}")
    print(f"wrote {out / 'phase_diagram.csv'}, {out / 'phase_diagram.png'}")


if __name__ == "__main__":
    main()
