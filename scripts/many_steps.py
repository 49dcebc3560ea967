r"""Many steps: the spectral film of ``W_t`` over T = 50–200 steps, outliers and alignments, readout MSE.

Past two steps the theory has no count (SPEC §2, §4 "Beyond two steps"); this script shows what happens. A
schedule :math:`\eta_t = c_t N^{\alpha_t}` (two large feature-learning steps, then a constant or
:math:`1/\sqrt t` tail) is trained with :class:`~spikelearn.module.TwoLayerModule`;
:class:`spikelearn.callbacks.SpectrumMonitor` analyses ``W_t`` at every step up to ``--first-k`` and every
``--every`` steps after, and a readout probe fits ``a`` by ridge regression on :math:`\sigma(W_t x)/\sqrt N`
(:meth:`TwoLayerModule.fit_readout`, Ba et al.'s protocol) at log-spaced checkpoints. The film draws the top
singular values with the Marchenko–Pastur edge :math:`1+\sqrt c`, the data-driven edge, the empirical edge
(largest non-outlier value) and the outlier cut, so counts that depend on the cut are visible as such.

Outputs in ``--out``: ``many_steps.csv`` (one row per mode and analysed step), ``many_steps_readout.csv`` and
``many_steps.png``.

    python scripts/many_steps.py                           # N = d = n = 512, T = 100, both modes (~1-2 min, 2 CPU cores)
    python scripts/many_steps.py --steps 200 --tail inverse_sqrt
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from spikelearn.callbacks import Cadence  # noqa: E402
from _common import (  # noqa: E402
    ReadoutProbe,
    RunConfig,
    base_parser,
    finish_figure,
    progress,
    run,
    setup,
    spectrum_monitor,
    write_csv,
)

TOP = 8
COLUMNS = ("batches", "step", "eta", "outliers", "outliers_marginal", "outliers_deflated", "predicted_outliers_finite_n",
           "comparator_coverage", "theory_note",
           "bulk_edge_theory", "bulk_edge", "bulk_edge_mp", "cut", "captured_energy", "outlier_values",
           *(f"s{i + 1}" for i in range(TOP)))
READOUT_COLUMNS = ("batches", "step", "readout_train_mse", "readout_test_mse")


def _parser():
    parser = base_parser("many_steps", __doc__.split("\n\n")[0], threads=1)
    parser.add_argument("--N", type=int, default=None, help="width (d = N / aspect)")
    parser.add_argument("--aspect", type=float, default=1.0, help="c = N/d")
    parser.add_argument("--batch-size", type=int, default=None, help="n (default d)")
    parser.add_argument("--steps", type=int, default=None, help="T")
    parser.add_argument("--batches", nargs="+", default=["independent", "reused"], choices=["independent", "reused"])
    parser.add_argument("--step-c", type=float, nargs="+", default=[1.0, 1.0, 0.5], help="c_1, c_2, ...")
    parser.add_argument("--step-alpha", type=float, nargs="+", default=[0.3, 0.45, 0.25], help="alpha_1, alpha_2, ...")
    parser.add_argument("--tail", default="constant", choices=["constant", "inverse_sqrt"], help="eta_t after the list")
    parser.add_argument("--target", default="he1")
    parser.add_argument("--first-k", type=int, default=5, help="analyse every step up to this one")
    parser.add_argument("--every", type=int, default=None, help="then every this many steps (default T/20)")
    parser.add_argument("--readout-points", type=int, default=8, help="log-spaced readout checkpoints")
    return parser


def _readout_steps(T: int, points: int) -> list[int]:
    steps = {0, 1, 2, T}
    for i in range(points):
        steps.add(round(T ** (i / max(points - 1, 1))))
    return sorted(s for s in steps if 0 <= s <= T)


def main(argv: list[str] | None = None) -> list[dict]:
    """Train each batch mode for T steps; returns the film rows (also written to ``many_steps.csv``)."""
    args = _parser().parse_args(argv)
    start = setup(args)
    N = args.N or (48 if args.quick else 512)
    T = args.steps or (6 if args.quick else 100)
    every = args.every or max(1, T // 20)
    d = max(1, round(N / args.aspect))
    n = args.batch_size or d
    film: list[dict] = []
    readout: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="many_") as scratch:
        for batches in progress(args.batches, "many steps", not args.no_progress):
            monitor = spectrum_monitor(Path(scratch) / batches, analyses=Cadence(first_k=args.first_k, every_n_steps=every))
            probe = ReadoutProbe(_readout_steps(T, args.readout_points))
            seed = args.seeds or 0
            config = RunConfig(
                model=dict(width=N, input_dim=d, step_c=tuple(args.step_c), step_alpha=tuple(args.step_alpha),
                           step_tail=args.tail, seed=seed),
                data=dict(input_dim=d, batch_size=n, batches=batches, target=args.target, seed=seed,
                          readout_size=max(2 * N, 256), test_size=max(2 * N, 256)),
                steps=T, precision=args.precision)
            run(config, [monitor, probe])
            for r in monitor.history:
                values = r["singular_values"]
                film.append({
                    "batches": batches, "step": r["step"], "eta": r["eta"], "outliers": r["outliers"],
                    "outliers_marginal": r["outliers_marginal"], "outliers_deflated": r["outliers_deflated"],
                    "predicted_outliers_finite_n": r["predicted_outliers_finite_n"],
                    "comparator_coverage": r.get("comparator_coverage"), "theory_note": r.get("theory_note"),
                    "bulk_edge_theory": r["bulk_edge_theory"], "bulk_edge": r["bulk_edge"],
                    "bulk_edge_mp": r["bulk_edge_mp"], "cut": r["cut"],
                    "captured_energy": r["captured_energy"], "outlier_values": r["outlier_values"],
                    **{f"s{i + 1}": values[i] if i < len(values) else None for i in range(TOP)},
                })
            readout.extend({"batches": batches, "step": p["step"], "readout_train_mse": p["readout/train_mse"],
                            "readout_test_mse": p["readout/test_mse"]} for p in probe.history)
    write_csv(film, args.out / "many_steps.csv")
    write_csv(readout, args.out / "many_steps_readout.csv")
    _figure(film, readout, args, N, d, n, T)
    seconds = time.perf_counter() - start
    for batches in args.batches:
        last = [r for r in film if r["batches"] == batches][-1]
        mse = [r for r in readout if r["batches"] == batches]
        print(f"{batches:<11} step {last['step']}: {last['outliers']} outliers (finite-N {last['predicted_outliers_finite_n']}), "
              f"captured {last['captured_energy']}, readout test MSE {mse[0]['readout_test_mse']:.3f} (t=0) -> "
              f"{mse[-1]['readout_test_mse']:.3f} (t={mse[-1]['step']})")
    print(f"many steps in {seconds:.1f} s; wrote {args.out / 'many_steps.csv'}, {args.out / 'many_steps.png'}")
    return film


def _figure(film: list[dict], readout: list[dict], args, N: int, d: int, n: int, T: int):
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    modes = list(dict.fromkeys(r["batches"] for r in film))
    fig = Figure(figsize=(13.5, 3.3 * len(modes) + 0.5), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(modes), 3, squeeze=False))
    for row, mode in enumerate(modes):
        mine = [r for r in film if r["batches"] == mode]
        steps = [r["step"] for r in mine]
        ax = axes[row, 0]
        for i in range(TOP):
            ax.plot(steps, [r[f"s{i + 1}"] for r in mine], color="C0" if i == 0 else "0.55", lw=1.2 if i == 0 else 0.8)
        ax.plot(steps, [r["bulk_edge_theory"] for r in mine], "--", color="k", lw=1, label="1+√c (iid init)")
        ax.plot(steps, [r["bulk_edge_mp"] for r in mine], "-.", color="C4", lw=1, label="MP edge at fitted ŝ")
        ax.plot(steps, [r["bulk_edge"] for r in mine], "-", color="C2", lw=1, label="fitted edge (from the bulk)")
        ax.plot(steps, [r["cut"] for r in mine], ":", color="C3", lw=1.3, label="outlier cut")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("step t")
        ax.set_ylabel(f"top {TOP} singular values")
        ax.set_title(f"{mode}: spectral film, N={N}, d={d}, n={n} (c=N/d={N / d:.3g})", fontsize=9)
        ax.legend(fontsize=7, loc="center right")  # between s1 (top) and the bulk edges (bottom)
        ax = axes[row, 1]
        ax.step(steps, [r["outliers"] for r in mine], where="post", color="C3", label="outliers (measured)")
        ax.step(steps, [r["outliers"] - (r["outliers_marginal"] or 0) for r in mine], where="post", color="C3", lw=0.8,
                ls="--", label="clear (not marginal)")
        ax.step(steps, [r["outliers_deflated"] for r in mine], where="post", color="C1", lw=0.9, label="deflated")
        finite_n = [math.nan if r["predicted_outliers_finite_n"] is None else r["predicted_outliers_finite_n"]
                    for r in mine]  # null where it does not apply (the record's theory_note says why)
        ax.plot(steps, finite_n, "o", ms=3, mfc="none", color="k", label="finite-N predicted (where it applies)")
        ax.set_xlabel("step t")
        ax.set_ylabel("count")
        twin = ax.twinx()
        r_dirs = len(mine[-1]["captured_energy"] or [])
        for j in range(r_dirs):
            twin.plot(steps, [(r["captured_energy"] or [None] * r_dirs)[j] for r in mine], "-", color=f"C{j + 5}",
                      lw=1, label=f"energy of β{j + 1} in outliers")
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("captured energy")
        ax.legend(fontsize=7, loc="center right")
        twin.legend(fontsize=7, loc="lower right")
        ax.set_title("outlier count and alignment", fontsize=9)
        ax = axes[row, 2]
        probe = [r for r in readout if r["batches"] == mode]
        ax.plot([r["step"] for r in probe], [r["readout_test_mse"] for r in probe], "o-", label="test")
        ax.plot([r["step"] for r in probe], [r["readout_train_mse"] for r in probe], "s--", ms=3, label="fit")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("step t (symlog)")
        ax.set_ylabel("ridge readout MSE (E y² = 1)")
        ax.set_title("readout at checkpoints", fontsize=9)
        ax.legend(fontsize=7)
    schedule = ", ".join(f"{c:g}·N^{a:g}" for c, a in zip(args.step_c, args.step_alpha))
    fig.suptitle(f"{T} steps, η_t = {schedule}, then {args.tail}; target {args.target}", fontsize=9)
    return finish_figure(fig, args.out / "many_steps.png", args.dpi)


if __name__ == "__main__":
    main()
