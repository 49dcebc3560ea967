r"""Which target directions two steps learn, independent vs reused batches, beside the learnability prediction.

SPEC §2: on independent batches only directions of information exponent 1 reach the outliers (the staircase's
:math:`\beta_2` is the non-additive exception); reusing the batch lets step 2 see powers of ``y``, so
:math:`\beta_j` is learned iff :math:`p^*(\beta_j) < \infty` and :math:`\alpha_2 > (p^*(\beta_j) - 1)(1/2 - \alpha_1)`.
For each target, batch mode and seed, two steps are trained with :class:`spikelearn.callbacks.SpectrumMonitor`
attached; its step-2 record gives the energy of each :math:`\beta_j` captured by the outlier subspace
(:math:`\sum_i \langle v_i, \beta_j\rangle^2`, random baseline :math:`n_{out}/d`) and in each order-k term of the
update (:math:`\langle\hat\rho_k, \beta_j\rangle^2`). The prediction is
:func:`spikelearn.functional.learnable_directions` with the target's own IE / p*.

Outputs in ``--out``: ``batch_reuse.csv`` (one row per target direction and mode) and ``batch_reuse.png``.

    python scripts/batch_reuse.py                          # N = 1024, 6 targets, 2 seeds, both modes (~15-30 s on 2 CPU cores)
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
    finish_figure,
    progress,
    read_csv,
    run,
    setup,
    spectrum_monitor,
    write_csv,
)

from spikelearn.functional import learnable_directions, make_target  # noqa: E402

# he1; even IE-2 (bounded, no heavy tail); (he2+he3)/sqrt2 (IE 2, p* 2); bounded IE-3; additive mix; staircase
DEFAULT_TARGETS = ("he1", "bounded_he2", "he2+he3", "bounded_he3", "additive", "staircase")
COLUMNS = ("target", "direction", "component", "IE", "p_star", "batches", "predicted_learnable", "learned",
           "captured_energy", "captured_energy_sd", "baseline", "outliers", "order_energy")


def _parser():
    parser = base_parser("batch_reuse", __doc__.split("\n\n")[0], threads=1)
    parser.add_argument("--targets", nargs="+", default=list(DEFAULT_TARGETS))
    parser.add_argument("--components", nargs="+", default=None,
                        help="components of the 'additive' target (default: make_target's he1 he2 bounded_he3)")
    parser.add_argument("--N", type=int, default=None, help="width (d = n = N)")
    parser.add_argument("--alphas", type=float, nargs=2, default=(0.3, 0.45), metavar=("A1", "A2"))
    parser.add_argument("--c", type=float, nargs=2, default=(1.0, 1.0), metavar=("C1", "C2"))
    parser.add_argument("--learned-threshold", type=float, default=0.1,
                        help="display rule: a direction counts as learned when its captured energy exceeds this")
    parser.add_argument("--from-csv", type=Path, default=None, help="redraw from an earlier batch_reuse.csv")
    return parser


def _prediction(target, a1: float, a2: float, reused: bool) -> tuple[bool, ...]:
    staircase = [target.name == "staircase" and j > 0 for j in range(target.rank)]  # SPEC §2's exception
    return learnable_directions(a1, a2, reused=reused, information_exponents=list(target.information_exponents),
                                reuse_exponents=list(target.reuse_exponents), staircase=staircase).learnable


def main(argv: list[str] | None = None) -> list[dict]:
    """Run every target and mode; returns the table rows (also written to ``batch_reuse.csv``)."""
    args = _parser().parse_args(argv)
    start = setup(args)
    N = args.N or (64 if args.quick else 1024)
    seeds = args.seeds or (1 if args.quick else 2)
    targets = args.targets if not args.quick or args.targets != list(DEFAULT_TARGETS) else ["he1", "staircase"]
    a1, a2 = args.alphas
    if args.from_csv:
        rows = _read_rows(args.from_csv)
        _figure(rows, args, N)
        _report(rows, time.perf_counter() - start, args.out)
        return rows
    grid = list(itertools.product(targets, ["independent", "reused"], range(seeds)))
    records: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="reuse_") as scratch:
        for i, (name, batches, seed) in enumerate(progress(grid, "batch reuse", not args.no_progress)):
            components = args.components if name == "additive" else None
            config = RunConfig(model=dict(width=N, step_c=tuple(args.c), step_alpha=(a1, a2), seed=seed),
                               data=dict(batches=batches, target=name, target_components=components, seed=seed),
                               precision=args.precision)
            monitor = spectrum_monitor(Path(scratch) / f"run{i}", analyses=Cadence(every_n_steps=2))
            run(config, [monitor])
            records.setdefault((name, batches), []).append(monitor.history[-1])
    rows = []
    for (name, batches), recs in records.items():
        target = make_target(name, args.components if name == "additive" else None)
        predicted = _prediction(target, a1, a2, batches == "reused")
        component_names = (args.components or ["he1", "he2", "bounded_he3"]) if name == "additive" else [name] * target.rank
        for j in range(target.rank):
            captured = [r["captured_energy"][j] for r in recs]
            order = [statistics.fmean(r["order_alignment"][k][j] for r in recs) for k in range(len(recs[0]["order_alignment"]))]
            rows.append({
                "target": name, "direction": j, "component": component_names[j],
                "IE": target.information_exponents[j], "p_star": target.reuse_exponents[j], "batches": batches,
                "predicted_learnable": predicted[j],
                "learned": statistics.fmean(captured) > args.learned_threshold,
                "captured_energy": statistics.fmean(captured), "captured_energy_sd": statistics.pstdev(captured),
                "baseline": statistics.fmean(r["captured_energy_baseline"] for r in recs),
                "outliers": statistics.fmean(r["outliers"] for r in recs),
                "order_energy": order,
            })
    write_csv(rows, args.out / "batch_reuse.csv")
    _figure(rows, args, N)
    _report(rows, time.perf_counter() - start, args.out)
    return rows


def _read_rows(path: Path) -> list[dict]:
    return read_csv(path, ints=("direction",),
                    floats=("IE", "p_star", "captured_energy", "captured_energy_sd", "baseline", "outliers"),
                    bools=("predicted_learnable", "learned"), float_lists=("order_energy",))


def _figure(rows: list[dict], args, N: int):
    import numpy as np
    from matplotlib.figure import Figure

    labels = []
    for row in rows:
        label = f"{row['target']}\nβ{row['direction'] + 1}" + (f" ({row['component']})" if row["target"] == "additive" else "")
        label += f"\nIE {row['IE']:g}, p* {row['p_star']:g}"
        if label not in labels:
            labels.append(label)
    x = np.arange(len(labels))
    fig = Figure(figsize=(max(8.0, 1.25 * len(labels) + 2), 7.0), layout="constrained")
    ax_bar, ax_ord = fig.subplots(2, 1, height_ratios=(3, 2))
    modes = ("independent", "reused")
    K = len(rows[0]["order_energy"])
    order_map = np.full((2 * K, len(labels)), np.nan)
    for m, mode in enumerate(modes):
        mine = [r for r in rows if r["batches"] == mode]
        xs = x + (m - 0.5) * 0.38
        ax_bar.bar(xs, [r["captured_energy"] for r in mine], 0.36, yerr=[r["captured_energy_sd"] for r in mine],
                   color=f"C{m}", capsize=2, label=f"{mode}: measured (outlier subspace)")
        for xi, r in zip(xs, mine):
            ax_bar.plot(xi, 1.6, marker="o" if r["predicted_learnable"] else "x", ms=7,
                        mfc="none" if r["predicted_learnable"] else None, color=f"C{m}")
            for k, value in enumerate(r["order_energy"]):
                order_map[m * K + k, list(x)[labels.index(_label_of(r, labels))]] = value
        ax_bar.plot(xs, [r["baseline"] for r in mine], "_", color="k", ms=12, mew=2)
    ax_bar.plot([], [], "o", mfc="none", color="0.3", label="predicted learnable")
    ax_bar.plot([], [], "x", color="0.3", label="predicted not learnable")
    ax_bar.plot([], [], "_", color="k", ms=12, label="random baseline n_out/d")
    ax_bar.axhline(args.learned_threshold, color="0.4", ls=":", lw=1)
    ax_bar.plot([], [], ":", color="0.4", label=f"'learned' display threshold {args.learned_threshold:g}")
    ax_bar.set_xticks(x, labels, fontsize=7)
    ax_bar.set_yscale("log")
    ax_bar.set_ylim(1e-4, 2.5)
    ax_bar.set_ylabel("captured energy Σ_i ⟨v_i, β_j⟩²")
    ax_bar.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.28))
    ax_bar.set_title(f"Two steps, (α1, α2) = ({args.alphas[0]:g}, {args.alphas[1]:g}), N = d = n = {N} "
                     f"(c = N/d = 1), {args.seeds or (1 if args.quick else 2)} seed(s)", fontsize=9)
    from matplotlib.colors import LogNorm

    im = ax_ord.imshow(np.clip(order_map, 1e-3, 1), aspect="auto", cmap="magma", norm=LogNorm(1e-3, 1))
    ax_ord.set_yticks(range(2 * K), [f"{mode[:5]} k={k}" for mode in modes for k in range(K)], fontsize=7)
    ax_ord.set_xticks(x, [lab.split("\n")[0] + " " + lab.split("\n")[1] for lab in labels], fontsize=7)
    ax_ord.axhline(K - 0.5, color="w", lw=1.5)
    ax_ord.set_title("energy of β_j in the order-k term of the step-2 update, ⟨ρ̂_k, β_j⟩²", fontsize=9)
    fig.colorbar(im, ax=ax_ord, shrink=0.9)
    return finish_figure(fig, args.out / "batch_reuse.png", args.dpi)


def _label_of(row: dict, labels: list[str]) -> str:
    head = f"{row['target']}\nβ{row['direction'] + 1}"
    return next(lab for lab in labels if lab.startswith(head + "\n") or lab.startswith(head + " "))


def _report(rows: list[dict], seconds: float, out: Path) -> None:
    agree = sum(r["learned"] == r["predicted_learnable"] for r in rows)
    print(f"batch reuse in {seconds:.1f} s: measured learned == predicted for {agree}/{len(rows)} (direction, mode)")
    print(f"{'target':<12} {'dir':>3} {'IE':>4} {'p*':>4} {'batches':<11} {'pred':>5} {'energy':>7} {'base':>6}")
    for r in rows:
        flag = "" if r["learned"] == r["predicted_learnable"] else "  <- differs"
        print(f"{r['target']:<12} {r['direction'] + 1:>3} {r['IE']:4g} {r['p_star']:4g} {r['batches']:<11} "
              f"{'yes' if r['predicted_learnable'] else 'no':>5} {r['captured_energy']:7.3f} {r['baseline']:6.3f}{flag}")
    print(f"wrote {out / 'batch_reuse.csv'}, {out / 'batch_reuse.png'}")


if __name__ == "__main__":
    main()
