"""Benchmark the spectral engine against one GD step of the same shape, on a real trajectory (issues 5, 10).

For each size ``N = d = n`` (float32, one process, side by side) it trains spikelearn's network with its own data
module: two spike-birth steps ``η = (N^0.35, 2 N^0.4)`` then small steps ``0.1 N^0.25``, and analyses every
``W_t`` with one :class:`~spikelearn.functional.engine.SpectralTracker` exactly as the monitor does (warm start
and cached products). It prints each analysis as a ratio of process CPU time to one GD step (the closed-form
``G(W)``: forward and backward GEMMs), the count beside the same rule applied to the float64 full spectrum, the
largest relative error of the outlier values, and the columns multiplied by ``W`` or ``Wᵀ``. With ``--weightwatcher`` (needs the optional ``bench`` extra) it also times
weightwatcher's ``analyze(mp_fit=True)`` against a cold :func:`~spikelearn.functional.engine.analyze` on a planted-spike matrix
``X + U diag(strengths) Vᵀ`` (default 2048², strengths 3 and 1.5: both above the BBP threshold, the second
only 0.17 above the edge), and reports each tool's outlier count beside the float64 reference count.

With ``--load K`` (issue 20) each size is measured twice in the same run, quiet and then beside ``K`` bounded
CPU-bound competitor processes (``scripts/_competitors.py``), and the two are printed side by side in synchronised
wall time, the cost a user sees: the engine's snapshot and the GD step in ms, and the snapshot as a share of the
step. ``--engine-threads`` sets :attr:`EngineConfig.threads <spikelearn.functional.inputs.EngineConfig>` (``0``:
no bound, the engine runs on the caller's threads).

Example::

    python scripts/bench_spectral.py --sizes 1024 2048 4096 --threads 1
    python scripts/bench_spectral.py --sizes 2048 --load 2
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from _competitors import competing_load, load_average

from spikelearn.functional.engine import analyze
from spikelearn.functional.inputs import EngineConfig
from spikelearn.functional.spectral import singular_values_full


def _timeit(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _gd_direction(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    n, N = X.shape[0], W.shape[0]
    Z = X @ W.T  # (n, N)
    h = torch.tanh(Z + 0.5)
    r = y - h @ a / math.sqrt(N)  # (n,)
    D = (1.0 - h * h) * r[:, None] * a[None, :]  # (n, N)
    return D.T @ X / (n * math.sqrt(N))  # (N, d)


def bench_size(
    size: int, repeats: int, k: int, seed: int = 0, small_steps: int = 2, device: str = "cpu",
    engine_threads: int | None = EngineConfig.threads, check: bool = True,
) -> dict[str, object]:
    """The tracker along a real trajectory at ``N = d = n = size``, each analysis as a ratio to one GD step.

    Trajectory: spikelearn's data module (``he1`` target, fresh batches), shifted-tanh network,
    ``η = (N^0.35, 2 N^0.4)`` for the spike-birth steps 1 and 2, then ``small_steps`` steps of ``0.1 N^0.25``.
    Each ``W_t`` is analysed by one :class:`SpectralTracker` (warm start and cached products as the monitor runs
    it); times are process CPU time per thread on the CPU (robust on a shared machine) and synchronised wall time
    (``*_wall`` keys, and on a GPU), medians of ``repeats`` re-runs of the same update from the same tracker state.
    With ``check`` the count is checked against the rule on the float64 full spectrum and the full ``svdvals``
    timed (``reference`` and ``max_rel_err`` are ``None`` without).
    """
    import copy

    from spikelearn.data import GaussianDataModule
    from spikelearn.functional import model as F
    from spikelearn.functional.activations import get_activation
    from spikelearn.functional.engine import SpectralTracker
    from spikelearn.functional.inputs import TheoryInputs
    from spikelearn.functional.outliers import detect_outliers

    g = torch.Generator().manual_seed(seed)
    N = d = n = size
    W = F.init_first_layer(N, d, g, "gaussian").to(device)
    a = F.init_second_layer(N, g, "gaussian").to(device)
    act = get_activation("shifted_tanh")
    data = GaussianDataModule(input_dim=d, batch_size=n, target="he1", seed=seed)
    schedule = [(1.0, 0.35), (2.0, 0.4)] + [(0.1, 0.25)] * small_steps
    X1, y1, _ = data.full_batch(1, device=device)
    timeit = _cpu_timeit if device == "cpu" else _cuda_timeit
    t_step, t_step_wall = timeit(lambda: F.negative_gradient(W, a, X1, y1, act), repeats)
    tracker = SpectralTracker(EngineConfig(k=k, threads=engine_threads))
    # the engine's CPU time is divided by the threads it runs on (EngineConfig.threads bounds the caller's count)
    engine_cpus = [min(engine_threads, torch.get_num_threads())] if device == "cpu" and engine_threads else []
    rows = []
    for t in range(len(schedule) + 1):
        if t:
            X, y, _ = data.full_batch(t, device=device)
            W = F.gradient_step(W, F.negative_gradient(W, a, X, y, act), schedule[t - 1][0] * N ** schedule[t - 1][1])
        theory = TheoryInputs(a=a, alphas=[al for _, al in schedule[:t]], B=data.directions.float().to(device))
        before = copy.deepcopy(tracker)
        t_snap, t_snap_wall = timeit(lambda: copy.deepcopy(before).update(W, t, theory), repeats, *engine_cpus)
        summary = tracker.update(W, t, theory).record()
        reference, err = None, None
        if check:
            full = singular_values_full(W)
            reference = detect_outliers(full[:128], N=N, d=d, frobenius_sq=float(W.double().square().sum())).count
            err = max((abs(v - float(e)) / float(e) for v, e in zip(summary["outlier_values"], full)), default=0.0)
        rows.append({
            "step": t, "snapshot": t_snap / t_step, "snapshot_s": t_snap, "snapshot_wall_s": t_snap_wall,
            "snapshot_wall": t_snap_wall / t_step_wall, "outliers": summary["outliers"],
            "marginal": summary["outliers_marginal"], "deflated": summary["outliers_deflated"],
            "reference": reference, "max_rel_err": err, "matvecs": summary["matvecs"],
        })
    t_svd = timeit(lambda: torch.linalg.svdvals(W), 1)[0] if check else math.nan
    return {"size": size, "step_s": t_step, "step_wall_s": t_step_wall, "svdvals": t_svd / t_step, "steps": rows}


def _cuda_timeit(fn: Callable[[], object], repeats: int, threads: int | None = None) -> tuple[float, float]:
    """Median synchronised wall time of ``fn`` on a GPU (after one warm-up call), twice (no CPU clock there)."""
    fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), statistics.median(times)


def _cpu_timeit(fn: Callable[[], object], repeats: int, threads: int | None = None) -> tuple[float, float]:
    """Median process CPU time of ``fn`` (after one warm-up call) divided by the threads it runs on (default the
    torch thread count), and median wall time."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        t0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - t0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu) / (threads or torch.get_num_threads()), statistics.median(wall)


def compare_weightwatcher(size: int = 2048, strengths: tuple[float, ...] = (3.0, 1.5), repeats: int = 3) -> dict:
    """weightwatcher ``analyze(mp_fit=True)`` vs a cold :func:`~spikelearn.functional.engine.analyze` on one planted-spike ``size²`` matrix.

    Raises:
        ImportError: when weightwatcher is not installed (``pip install -e '.[bench]'``).
    """
    import logging

    import weightwatcher  # optional; it reconfigures global logging, so it is imported only here

    from spikelearn.functional.rmt import bgn_rank_one
    from spikelearn.functional.outliers import detect_outliers

    g = torch.Generator().manual_seed(0)
    X = torch.randn(size, size, generator=g) / size**0.5  # (N, d), c = 1
    U = torch.linalg.qr(torch.randn(size, len(strengths), generator=g))[0]
    V = torch.linalg.qr(torch.randn(size, len(strengths), generator=g))[0]
    W = X + U @ torch.diag(torch.tensor(strengths)) @ V.T
    reference = detect_outliers(
        singular_values_full(W.double())[:64], N=size, d=size, frobenius_sq=float(W.double().square().sum())
    ).count
    t_ours = _timeit(lambda: analyze(W, config=EngineConfig(k=8)), repeats)
    ours = analyze(W, config=EngineConfig(k=8))[0].outliers.count
    model = torch.nn.Sequential(torch.nn.Linear(size, size, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(W)
    level = logging.getLogger().level
    start = time.perf_counter()
    details = weightwatcher.WeightWatcher(model=model).analyze(mp_fit=True)
    t_ww = time.perf_counter() - start
    logging.getLogger().setLevel(level)
    return {
        "size": size,
        "predicted_locations": [bgn_rank_one(s, 1.0).location for s in strengths],
        "reference_count": reference,
        "spikelearn_count": ours,
        "weightwatcher_count": int(details["num_spikes"].iloc[0]),
        "spikelearn_s": t_ours,
        "weightwatcher_s": t_ww,
        "speedup": t_ww / t_ours,
    }


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (GPU: synchronised wall times)")
    parser.add_argument("--load", type=int, default=0, metavar="K",
                        help="also measure beside K CPU-bound competitor processes; quiet and loaded side by side")
    parser.add_argument("--engine-threads", type=int, default=EngineConfig.threads,
                        help=f"EngineConfig.threads (0: no bound; default {EngineConfig.threads})")
    parser.add_argument("--weightwatcher", action="store_true",
                        help="also compare with weightwatcher analyze(mp_fit=True) (optional `bench` extra)")
    parser.add_argument("--weightwatcher-size", type=int, default=2048)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    engine_threads = args.engine_threads or None
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, engine threads {engine_threads}, float32, "
          f"{args.device}")
    print(f"load average {load_average()}")
    rows: list[dict] = []
    if args.load:
        print(f"quiet, then beside {args.load} CPU-bound competitors; synchronised wall times (what a user sees), "
              "medians of the repeats; the snapshot's process CPU time per thread it runs on beside them")
        print(f"{'N=d=n':>6} {'step':>4} {'GD ms quiet':>11} {'loaded':>7} {'snap ms quiet':>13} {'loaded':>7} "
              f"{'% step quiet':>12} {'loaded':>7} {'snap CPU ms quiet':>17} {'loaded':>7} {'n_out':>5} {'float64':>7}")
        for size in args.sizes:
            quiet = bench_size(size, args.repeats, args.k, device=args.device, engine_threads=engine_threads)
            load_quiet = load_average()
            with competing_load(args.load):
                loaded = bench_size(size, args.repeats, args.k, device=args.device, engine_threads=engine_threads,
                                    check=False)
                load_loaded = load_average()
            rows.append({"size": size, "load": args.load, "quiet": quiet, "loaded": loaded})
            for q, lo in zip(quiet["steps"], loaded["steps"]):
                print(
                    f"{size:>6} {q['step']:>4} {1e3 * quiet['step_wall_s']:>11.0f} {1e3 * loaded['step_wall_s']:>7.0f} "
                    f"{1e3 * q['snapshot_wall_s']:>13.0f} {1e3 * lo['snapshot_wall_s']:>7.0f} "
                    f"{q['snapshot_wall']:>12.1%} {lo['snapshot_wall']:>7.1%} {1e3 * q['snapshot_s']:>17.0f} "
                    f"{1e3 * lo['snapshot_s']:>7.0f} {q['outliers']:>5} {q['reference']:>7}",
                    flush=True,
                )
            print(f"{size:>6} load average after the quiet pass {load_quiet}, after the loaded pass {load_loaded}",
                  flush=True)
        return rows
    print("ratios are process CPU time / threads, so a busy machine inflates both sides alike")
    print(f"{'N=d=n':>6} {'step':>4} {'GD step s':>9} {'snapshot':>9} {'n_out':>5} {'marg':>4} {'defl':>4} "
          f"{'float64':>7} {'max rel err':>11} {'matvecs':>7}")
    for size in args.sizes:
        r = bench_size(size, args.repeats, args.k, device=args.device, engine_threads=engine_threads)
        rows.append(r)
        for s in r["steps"]:
            print(
                f"{size:>6} {s['step']:>4} {r['step_s']:>9.3f} {s['snapshot']:>8.1%} {s['outliers']:>5} "
                f"{s['marginal']:>4} {s['deflated']:>4} {s['reference']:>7} {s['max_rel_err']:>11.1e} {s['matvecs']:>7}",
                flush=True,
            )
        print(f"{size:>6} full svdvals: {r['svdvals']:.2f}x a GD step", flush=True)
    if args.weightwatcher:
        try:
            ww = compare_weightwatcher(args.weightwatcher_size, repeats=args.repeats)
        except ImportError:
            print("weightwatcher is not installed: pip install -e '.[bench]'")
        else:
            print(
                f"planted spikes {ww['size']}² (BGN locations {', '.join(f'{x:.3f}' for x in ww['predicted_locations'])}; "
                f"float64 reference count {ww['reference_count']}): spikelearn {ww['spikelearn_count']} outliers in "
                f"{ww['spikelearn_s']:.3f} s, weightwatcher analyze(mp_fit=True) {ww['weightwatcher_count']} spikes in "
                f"{ww['weightwatcher_s']:.2f} s: {ww['speedup']:.0f}x faster"
            )
            rows.append(ww)
    return rows


if __name__ == "__main__":
    main()
