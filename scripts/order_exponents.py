r"""Order-k strengths of the step-2 update against N: the fitted exponent per k beside :math:`\alpha_2 - k(1/2-\alpha_1)`.

SPEC §2: the second update is :math:`\sum_k \theta_k \hat a_k \hat\rho_k^\top` with
:math:`\theta_k \asymp N^{\alpha_2 - k(1/2 - \alpha_1)}`. Outlier counts hide this law at small N (the last
visible term's exponent is often below 0.05), but the strengths themselves are measurable below the BBP
threshold. For each :math:`(\alpha_1, \alpha_2)`, batch mode and N on a geometric range, two steps are
trained (:class:`~spikelearn.module.TwoLayerModule`, Lightning ``Trainer``), ``W_1`` and ``W_2`` are kept, and
:func:`spikelearn.functional.order_decomposition` fits :math:`W_2 - W_1 \approx \sum_k a^{\circ(k+1)}\rho_k^\top`.
The exponent per k is the least-squares slope of :math:`\log \theta_k` against :math:`\log N` (all seeds).

Noise floor: the same fit applied to the update with its rows' signs flipped at random (:math:`\mathrm{diag}(\epsilon)
(W_2 - W_1)`), which keeps the update's energy but destroys its alignment with :math:`a, a^{\circ2}, \dots`: a
strength at or below that floor is not a measurement.

Outputs in ``--out``: ``order_exponents_runs.csv`` (strength per run and k), ``order_exponents.csv`` (fitted vs
predicted exponent per (α1, α2), mode, k) and ``order_exponents.png``.

    python scripts/order_exponents.py                     # N = 256..4096, 3 seeds, (0.3,0.45) and (0.4,0.45), both modes (~3 min on 2 shared CPU cores)
    python scripts/order_exponents.py --N 1024 2048 4096 8192 16384 --seeds 3   # on a GPU
"""

from __future__ import annotations

import itertools
import math
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import (  # noqa: E402
    KeepWeights,
    RunConfig,
    base_parser,
    finish_figure,
    log_slope,
    progress,
    read_csv,
    run,
    setup,
    write_csv,
)

from spikelearn.functional import order_decomposition  # noqa: E402

RUN_COLUMNS = ("alpha1", "alpha2", "batches", "N", "seed", "k", "strength", "noise_floor", "alignment_beta0",
               "predicted_exponent")
FIT_COLUMNS = ("alpha1", "alpha2", "batches", "k", "predicted_exponent", "fitted_exponent", "fitted_stderr",
               "fitted_exponent_large_N", "N_min", "N_max", "floor_ratio", "above_floor")


def _pair(text: str) -> tuple[float, float]:
    parts = [float(x) for x in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"--alphas takes pairs like 0.3,0.45, got {text!r}.")
    return parts[0], parts[1]


def _parser():
    parser = base_parser("order_exponents", __doc__.split("\n\n")[0])
    parser.add_argument("--alphas", type=_pair, nargs="+", default=None,
                        help="(alpha1,alpha2) pairs, e.g. 0.3,0.45 0.4,0.45 (default both; --quick: the first)")
    parser.add_argument("--N", type=int, nargs="+", default=None, help="widths (d = n = N)")
    parser.add_argument("--batches", nargs="+", default=["independent", "reused"], choices=["independent", "reused"])
    parser.add_argument("--c", type=float, nargs=2, default=(1.0, 1.0), metavar=("C1", "C2"))
    parser.add_argument("--max-order", type=int, default=4, help="highest order K of the fit")
    parser.add_argument("--target", default="he1")
    parser.add_argument("--from-csv", type=Path, default=None,
                        help="refit and redraw from an earlier order_exponents_runs.csv instead of training")
    return parser


def predicted_exponent(alpha1: float, alpha2: float, k: int) -> float:
    r"""The law's exponent of :math:`\theta_k` for the step-2 update (SPEC §2), :math:`\alpha_2 - k(1/2 - \alpha_1)`."""
    return alpha2 - k * (0.5 - alpha1)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the grid; returns the fit rows (also written to ``order_exponents.csv``)."""
    args = _parser().parse_args(argv)
    start = setup(args)
    widths = args.N or ([32, 64] if args.quick else [256, 512, 1024, 2048, 4096])
    seeds = args.seeds or (2 if args.quick else 3)
    alphas = args.alphas or ([(0.3, 0.45)] if args.quick else [(0.3, 0.45), (0.4, 0.45)])
    grid = list(itertools.product(alphas, args.batches, widths, range(seeds)))
    rows: list[dict] = _read_runs(args.from_csv) if args.from_csv else []
    for (a1, a2), batches, N, seed in progress([] if args.from_csv else grid, "order exponents", not args.no_progress):
        keep = KeepWeights({1, 2})
        config = RunConfig(model=dict(width=N, step_c=tuple(args.c), step_alpha=(a1, a2), seed=seed),
                           data=dict(batches=batches, target=args.target, seed=seed), precision=args.precision)
        _, module, data = run(config, [keep])
        W1, W2, a = keep.weights[1], keep.weights[2], module.a.detach()
        B = data.directions.to(W2.dtype)
        fit = order_decomposition(W2, a, W_prev=W1, max_order=args.max_order, B=B)
        signs = torch.randint(0, 2, (N, 1), generator=torch.Generator().manual_seed(10_000 + seed)).to(W2.dtype) * 2 - 1
        floor = order_decomposition(signs * W2, a, W_prev=signs * W1, max_order=args.max_order).strengths
        for k in range(args.max_order + 1):
            rows.append({
                "alpha1": a1, "alpha2": a2, "batches": batches, "N": N, "seed": seed, "k": k,
                "strength": float(fit.strengths[k]), "noise_floor": float(floor[k]),
                "alignment_beta0": float(fit.alignment[k, 0]) if fit.alignment is not None else None,
                "predicted_exponent": predicted_exponent(a1, a2, k),
            })
    fits = _fits(rows)
    write_csv(rows, args.out / "order_exponents_runs.csv")
    write_csv(fits, args.out / "order_exponents.csv")
    _figure(rows, fits, args)
    _report(fits, time.perf_counter() - start, args.out)
    return fits


def _read_runs(path: Path) -> list[dict]:
    return read_csv(path, ints=("N", "seed", "k"),
                    floats=("alpha1", "alpha2", "strength", "noise_floor", "alignment_beta0", "predicted_exponent"))


def _fits(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["alpha1"], row["alpha2"], row["batches"], row["k"]), []).append(row)
    fits = []
    for (a1, a2, batches, k), mine in groups.items():
        widths = sorted({r["N"] for r in mine})
        slope, stderr = log_slope([(r["N"], r["strength"]) for r in mine])
        large = [r for r in mine if r["N"] in widths[-3:]]
        slope_large = log_slope([(r["N"], r["strength"]) for r in large])[0] if len(widths) >= 4 else math.nan
        top = [r for r in mine if r["N"] == widths[-1]]
        ratio = statistics.fmean(r["strength"] for r in top) / statistics.fmean(r["noise_floor"] for r in top)
        fits.append({
            "alpha1": a1, "alpha2": a2, "batches": batches, "k": k, "predicted_exponent": predicted_exponent(a1, a2, k),
            "fitted_exponent": slope, "fitted_stderr": stderr, "fitted_exponent_large_N": slope_large,
            "N_min": widths[0], "N_max": widths[-1],
            # at the largest N: strength / sign-flip noise floor (seed means); <= 1 means not a measurement
            "floor_ratio": ratio,
            "above_floor": ratio > 1.0,
        })
    return fits


def _figure(rows: list[dict], fits: list[dict], args) -> Path:
    import numpy as np
    from matplotlib.figure import Figure

    panels = sorted({(r["alpha1"], r["alpha2"], r["batches"]) for r in rows})
    orders = sorted({r["k"] for r in rows})
    ncols = 2
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.9 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (a1, a2, batches) in zip(axes, panels):
        for k in orders:
            mine = [r for r in rows if (r["alpha1"], r["alpha2"], r["batches"], r["k"]) == (a1, a2, batches, k)]
            widths = sorted({r["N"] for r in mine})
            mean = [statistics.fmean(r["strength"] for r in mine if r["N"] == N) for N in widths]
            std = [statistics.pstdev([r["strength"] for r in mine if r["N"] == N]) for N in widths]
            floor = [statistics.fmean(r["noise_floor"] for r in mine if r["N"] == N) for N in widths]
            fit = next(f for f in fits if (f["alpha1"], f["alpha2"], f["batches"], f["k"]) == (a1, a2, batches, k))
            color = f"C{k}"
            ax.errorbar(widths, mean, yerr=std, fmt="o-", color=color, ms=4, capsize=2, lw=1.2,
                        label=f"k={k}: fit {fit['fitted_exponent']:+.2f}, law {fit['predicted_exponent']:+.2f}")
            # the law's slope, anchored at the largest N's measured mean
            x = np.array([widths[0], widths[-1]], dtype=float)
            ax.plot(x, mean[-1] * (x / widths[-1]) ** fit["predicted_exponent"], "--", color=color, lw=1.0)
            ax.plot(widths, floor, ":", color=color, lw=1.0)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("N (= d = n, c = N/d = 1)")
        ax.set_ylabel("order-k strength θ_k of W2 − W1")
        ax.set_title(f"(α1, α2) = ({a1:g}, {a2:g}), {batches}", fontsize=9)
        ax.legend(fontsize=6.5, loc="upper left", framealpha=0.7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("Step-2 order-k strengths vs N (mean ± sd over seeds); dashed: law N^(α2 − k(½−α1)); "
                 "dotted: sign-flip noise floor", fontsize=9)
    return finish_figure(fig, args.out / "order_exponents.png", args.dpi)


def _report(fits: list[dict], seconds: float, out: Path) -> None:
    print(f"order exponents in {seconds:.1f} s (fit over all N; 'large N' over the largest three)")
    print(f"{'alpha1':>6} {'alpha2':>6} {'batches':<11} {'k':>2} {'law':>7} {'fit':>7} {'±':>5} {'large N':>8} strength/floor at N_max")
    for f in fits:
        print(f"{f['alpha1']:6.2f} {f['alpha2']:6.2f} {f['batches']:<11} {f['k']:2d} {f['predicted_exponent']:+7.3f} "
              f"{f['fitted_exponent']:+7.3f} {f['fitted_stderr']:5.3f} {f['fitted_exponent_large_N']:+8.3f} "
              f"{f['floor_ratio']:.2f}{'' if f['above_floor'] else ' (at floor)'}")
    print(f"wrote {out / 'order_exponents.csv'}, {out / 'order_exponents.png'}")


if __name__ == "__main__":
    main()
