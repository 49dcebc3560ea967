r"""Laws at any step: the N-exponent of every order-k strength and every tracked spike, at every analysed step.

Generalises ``order_exponents.py`` (step 2 only) to step ``t``. For each batch mode (fresh, reused, resampled every
``m`` steps), width ``N`` on a geometric range and seed, ``T`` full-batch steps of sizes ``η_t = c_t N^{α_t}`` are
trained (:class:`~spikelearn.module.TwoLayerModule`); at every analysed step ``t`` the update ``W_t − W_{t−1}`` is fitted
on the order-k terms (:func:`spikelearn.functional.order_decomposition`) and ``W_t`` goes through one
:class:`~spikelearn.functional.engine.SpectralTracker` (spike ids across steps). The exponent of ``θ_k^{(t)}`` and of
each spike's value is the least-squares slope of its log against ``log N`` over all seeds, with its standard error,
printed and drawn beside the **stated extension** of the two-step law (docs/theory.md §2; a conjecture this script
tests): :math:`\theta_k^{(t)} \asymp N^{\alpha_t - k(1/2 - \bar\alpha_t)}`, :math:`\bar\alpha_t = \max_{s<t}\alpha_s`.
Spikes are matched across N by birth step and rank among the spikes born then (ids are per run).

Outputs in ``--out``: ``step_exponents_runs.csv`` (strength per run, step and k; spike values per run, step and id),
``step_exponents.csv`` (fitted vs stated exponent per mode, step, k) and ``step_exponents.png``.

    python scripts/step_exponents.py                     # N = 256..1024, 2 seeds, T = 10, three modes (a few min, CPU)
    python scripts/step_exponents.py --N 1024 2048 4096 8192 --seeds 3 --steps 50    # the large-N column, on a GPU
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    KeepWeights,
    RunConfig,
    base_parser,
    finish_figure,
    log_slope,
    progress,
    run,
    setup,
    write_csv,
)

from spikelearn.functional import order_decomposition  # noqa: E402
from spikelearn.functional.engine import SpectralTracker  # noqa: E402
from spikelearn.functional.inputs import EngineConfig, TheoryInputs  # noqa: E402

RUN_COLUMNS = ("batches", "N", "seed", "step", "kind", "k", "value", "extension_exponent")
FIT_COLUMNS = ("batches", "step", "kind", "k", "extension_exponent", "fitted_exponent", "fitted_stderr", "N_min",
               "N_max", "runs")
MODES = {"independent": {}, "reused": {}, "resample_every": {"resample_every": 2}}


def _parser():
    parser = base_parser("step_exponents", __doc__.split("\n\n")[0])
    parser.add_argument("--N", type=int, nargs="+", default=None, help="widths (d = n = N)")
    parser.add_argument("--steps", type=int, default=None, help="T, the steps trained (default 10; --quick 3)")
    parser.add_argument("--analyse", type=int, nargs="+", default=None,
                        help="steps whose exponents are fitted (default 2 3 5 10, those <= T)")
    parser.add_argument("--c", type=float, nargs="+", default=[1.0, 1.0, 0.5], help="c_1 c_2 ... (then constant)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.3, 0.45, 0.25],
                        help="alpha_1 alpha_2 ... (the last one is held: a constant tail)")
    parser.add_argument("--batches", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--resample-every", type=int, default=2, help="m of the resample_every mode")
    parser.add_argument("--max-order", type=int, default=4, help="highest order K of the fit")
    parser.add_argument("--target", default="he1")
    return parser


def schedule_alphas(alphas: list[float], steps: int) -> list[float]:
    """``α_1 … α_T`` from the listed exponents and a constant tail."""
    return [alphas[min(t, len(alphas) - 1)] for t in range(steps)]


def extension_exponent(alphas: list[float], step: int, k: int) -> float:
    r"""The stated extension's exponent of :math:`\theta_k^{(t)}`: :math:`\alpha_t - k(1/2 - \max_{s<t}\alpha_s)`
    (at ``t = 2`` the theorem's :math:`\alpha_2 - k(1/2 - \alpha_1)`; at ``t = 1``, :math:`\alpha_1` for ``k = 0``)."""
    a_t = alphas[step - 1]
    if step == 1:
        return a_t if k == 0 else math.nan
    return a_t - k * (0.5 - max(alphas[: step - 1]))


def _one_run(args, batches: str, N: int, seed: int, steps: int, analysed: list[int]) -> list[dict]:
    alphas = schedule_alphas(args.alphas, steps)
    cs = [args.c[min(t, len(args.c) - 1)] for t in range(steps)]
    data_args = dict(batches=batches, target=args.target, seed=seed)
    if batches == "resample_every":
        data_args["resample_every"] = args.resample_every
    keep = KeepWeights(set(range(steps + 1)))
    config = RunConfig(model=dict(width=N, step_c=tuple(cs), step_alpha=tuple(alphas), seed=seed), data=data_args,
                       steps=steps, precision=args.precision)
    _, module, data = run(config, [keep])
    a = module.a.detach()
    tracker, rows = SpectralTracker(EngineConfig(k=16, max_order=args.max_order)), []
    births: dict[int, int] = {}
    for t in range(steps + 1):
        W = keep.weights[t]
        record = tracker.update(W, t, TheoryInputs(a=a)).record()
        if t not in analysed:
            continue
        fit = order_decomposition(W, a, W_prev=keep.weights[t - 1], max_order=args.max_order)
        for k in range(args.max_order + 1):
            rows.append({"batches": batches, "N": N, "seed": seed, "step": t, "kind": "order", "k": k,
                         "value": float(fit.strengths[k]), "extension_exponent": extension_exponent(alphas, t, k)})
        # spikes: matched across N by (birth step, rank among the spikes born at that step)
        born: dict[int, int] = {}
        for spike_id, birth, value in zip(record["outlier_ids"], record["outlier_births"], record["outlier_values"]):
            births.setdefault(spike_id, birth)
            rank = born[birth] = born.get(birth, -1) + 1
            rows.append({"batches": batches, "N": N, "seed": seed, "step": t, "kind": f"spike_born{birth}",
                         "k": rank, "value": float(value), "extension_exponent": math.nan})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the grid; returns the fit rows (also written to ``step_exponents.csv``)."""
    args = _parser().parse_args(argv)
    start = setup(args)
    widths = args.N or ([32, 64] if args.quick else [256, 512, 1024])
    seeds = args.seeds or 2
    steps = args.steps or (3 if args.quick else 10)
    analysed = [t for t in (args.analyse or [2, 3, 5, 10]) if 1 <= t <= steps]
    rows: list[dict] = []
    grid = list(itertools.product(args.batches, widths, range(seeds)))
    for batches, N, seed in progress(grid, "step exponents", not args.no_progress):
        rows += _one_run(args, batches, N, seed, steps, analysed)
    fits = _fits(rows)
    write_csv(rows, args.out / "step_exponents_runs.csv")
    write_csv(fits, args.out / "step_exponents.csv")
    _figure(fits, args)
    _report(fits, time.perf_counter() - start, args.out)
    return fits


def _fits(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["batches"], row["step"], row["kind"], row["k"]), []).append(row)
    fits = []
    for (batches, step, kind, k), mine in sorted(groups.items()):
        widths = sorted({r["N"] for r in mine})
        if len(widths) < 2:  # a spike seen at one width only has no exponent
            continue
        slope, stderr = log_slope([(r["N"], r["value"]) for r in mine])
        fits.append({"batches": batches, "step": step, "kind": kind, "k": k,
                     "extension_exponent": mine[0]["extension_exponent"], "fitted_exponent": slope,
                     "fitted_stderr": stderr, "N_min": widths[0], "N_max": widths[-1], "runs": len(mine)})
    return fits


def _figure(fits: list[dict], args) -> Path:
    import numpy as np
    from matplotlib.figure import Figure

    modes = sorted({f["batches"] for f in fits})
    fig = Figure(figsize=(5.0 * len(modes), 3.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(modes), squeeze=False)).ravel()
    for ax, mode in zip(axes, modes):
        orders = sorted({f["k"] for f in fits if f["batches"] == mode and f["kind"] == "order"})
        for k in orders:
            mine = sorted((f for f in fits if (f["batches"], f["kind"], f["k"]) == (mode, "order", k)),
                          key=lambda f: f["step"])
            steps = [f["step"] for f in mine]
            ax.errorbar(steps, [f["fitted_exponent"] for f in mine], yerr=[f["fitted_stderr"] for f in mine],
                        fmt="o-", ms=4, capsize=2, color=f"C{k}", label=f"k={k} fitted")
            ax.plot(steps, [f["extension_exponent"] for f in mine], "--", color=f"C{k}", lw=1.0)
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel("step t")
        ax.set_ylabel("exponent of θ_k^(t) in N")
        ax.set_title(f"{mode}: fitted (± s.e.) vs stated extension (dashed)", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Order-k strengths of the step-t update: N-exponents beside α_t − k(½ − max_{s<t} α_s), a "
                 "conjecture (docs/theory.md §2)", fontsize=9)
    return finish_figure(fig, args.out / "step_exponents.png", args.dpi)


def _report(fits: list[dict], seconds: float, out: Path) -> None:
    print(f"step exponents in {seconds:.1f} s (slopes of log value on log N over all seeds; orders, then spikes)")
    print(f"{'batches':<15} {'t':>3} {'kind':<13} {'k':>2} {'stated':>7} {'fitted':>7} {'±':>6}")
    for f in fits:
        stated = "" if math.isnan(f["extension_exponent"]) else f"{f['extension_exponent']:+7.3f}"
        print(f"{f['batches']:<15} {f['step']:3d} {f['kind']:<13} {f['k']:2d} {stated:>7} "
              f"{f['fitted_exponent']:+7.3f} {f['fitted_stderr']:6.3f}")
    print(f"wrote {out / 'step_exponents.csv'}, {out / 'step_exponents.png'}")


if __name__ == "__main__":
    main()
