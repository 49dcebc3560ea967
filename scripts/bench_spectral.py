"""Benchmark the spectral engine against one GD step of the same shape (issue 5).

For each size ``N = d = n`` (float32, one process, side by side) it builds a two-step
trajectory with the shifted-tanh network, ``W1 = W0 + eta1 sqrt(N) G(W0)``,
``W2 = W1 + eta2 sqrt(N) G(W1)``, and times on ``W2``:

* one bare GD step (forward + ``G = (sigma'(X W^T) * r * a)^T X / (n sqrt(N))``),
* full ``svdvals``,
* cold top-k (``analyze_snapshot`` without warm start, ``W`` only),
* warm top-k (warm-started from ``W1``'s right vectors, ``W`` only),
* the complete warm snapshot analysis (``a``, ``B``, ``W_prev``, ``W0``, ``alphas``), warm-started
  the way the callback runs it along a trajectory: ``warm_start`` and ``warm_start_deflated``
  from ``W1``'s summary, ``W_prev_products`` / ``W0_products`` from the ``W1`` / ``W0``
  summaries' ``a_products`` (so no pass over ``W1`` or ``W0``),

and prints each as a ratio to the GD step, with the largest relative error of the outlier
values against a float64 full SVD. With ``--weightwatcher`` (needs the optional ``bench`` extra) it also times
weightwatcher's ``analyze(mp_fit=True)`` against a cold ``analyze_snapshot`` on a planted-spike matrix
``X + U diag(strengths) Vᵀ`` (default 2048², strengths 3 and 1.5: both above the BBP threshold, the second
only 0.17 above the edge), and reports each tool's outlier count beside the float64 reference count.

Example::

    python scripts/bench_spectral.py --sizes 1024 2048 4096
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch

from spikelearn.functional.spectral import analyze_snapshot, singular_values_full


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


def bench_size(size: int, repeats: int, k: int, seed: int = 0) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    N = d = n = size
    W0 = torch.randn(N, d, generator=g) / math.sqrt(d)
    a = torch.randn(N, generator=g) / math.sqrt(N)
    B = torch.linalg.qr(torch.randn(d, 1, generator=g))[0]  # (d, 1)
    X1 = torch.randn(n, d, generator=g)
    X2 = torch.randn(n, d, generator=g)
    target = lambda X: (X @ B)[:, 0] + ((X @ B)[:, 0] ** 2 - 1) / math.sqrt(2)  # noqa: E731
    alphas = (0.3, 0.25)
    eta = [N**al for al in alphas]
    W1 = W0 + eta[0] * math.sqrt(N) * _gd_direction(W0, X1, target(X1), a)
    W2 = W1 + eta[1] * math.sqrt(N) * _gd_direction(W1, X2, target(X2), a)
    y2 = target(X2)

    t_step = _timeit(lambda: _gd_direction(W1, X2, y2, a), repeats)
    t_svd = _timeit(lambda: torch.linalg.svdvals(W2), 1)
    first = analyze_snapshot(W0, a=a, k=k)
    prev = analyze_snapshot(W1, a=a, k=k, warm_start=first.right_vectors,
                            warm_start_deflated=first.deflated_right_vectors)
    t_cold = _timeit(lambda: analyze_snapshot(W2, k=k), repeats)
    t_warm = _timeit(lambda: analyze_snapshot(W2, k=k, warm_start=prev.right_vectors), repeats)
    full = lambda: analyze_snapshot(  # noqa: E731
        W2, a=a, B=B, W_prev=W1, W0=W0, alphas=alphas, k=k, warm_start=prev.right_vectors,
        warm_start_deflated=prev.deflated_right_vectors, W_prev_products=prev.a_products,
        W0_products=first.a_products,
    )
    t_full = _timeit(full, repeats)
    summary = full()
    exact = singular_values_full(W2)[: max(summary.outliers, 1)]
    err = max(
        (abs(v - float(e)) / float(e) for v, e in zip(summary.outlier_values, exact)), default=0.0
    )
    result = {
        "size": size,
        "step_s": t_step,
        "svdvals": t_svd / t_step,
        "cold_topk": t_cold / t_step,
        "warm_topk": t_warm / t_step,
        "snapshot": t_full / t_step,
        "outliers": summary.outliers,
        "outliers_deflated": summary.outliers_deflated,
        "max_rel_err": err,
        "matvecs": summary.matvecs,
    }
    return result


def compare_weightwatcher(size: int = 2048, strengths: tuple[float, ...] = (3.0, 1.5), repeats: int = 3) -> dict:
    """weightwatcher ``analyze(mp_fit=True)`` vs a cold ``analyze_snapshot`` on one planted-spike ``size²`` matrix.

    Raises:
        ImportError: when weightwatcher is not installed (``pip install -e '.[bench]'``).
    """
    import logging

    import weightwatcher  # optional; it reconfigures global logging, so it is imported only here

    from spikelearn.functional.rmt import bgn_rank_one
    from spikelearn.functional.spectral import detect_outliers

    g = torch.Generator().manual_seed(0)
    X = torch.randn(size, size, generator=g) / size**0.5  # (N, d), c = 1
    U = torch.linalg.qr(torch.randn(size, len(strengths), generator=g))[0]
    V = torch.linalg.qr(torch.randn(size, len(strengths), generator=g))[0]
    W = X + U @ torch.diag(torch.tensor(strengths)) @ V.T
    reference = detect_outliers(
        singular_values_full(W.double())[:64], N=size, d=size, frobenius_sq=float(W.double().square().sum())
    ).count
    t_ours = _timeit(lambda: analyze_snapshot(W, k=8), repeats)
    ours = analyze_snapshot(W, k=8).outliers
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
    parser.add_argument("--weightwatcher", action="store_true",
                        help="also compare with weightwatcher analyze(mp_fit=True) (optional `bench` extra)")
    parser.add_argument("--weightwatcher-size", type=int, default=2048)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float32, CPU")
    header = (
        f"{'N=d=n':>6} {'step s':>7} {'svdvals':>8} {'cold':>7} {'warm':>7} {'snapshot':>9} "
        f"{'n_out':>5} {'defl':>4} {'max rel err':>11} {'matvecs':>7}"
    )
    print(header)
    rows = []
    for size in args.sizes:
        r = bench_size(size, args.repeats, args.k)
        rows.append(r)
        print(
            f"{size:>6} {r['step_s']:>7.3f} {r['svdvals']:>7.2f}x {r['cold_topk']:>6.2%} "
            f"{r['warm_topk']:>6.2%} {r['snapshot']:>8.2%} {r['outliers']:>5} "
            f"{r['outliers_deflated']:>4} {r['max_rel_err']:>11.2e} {r['matvecs']:>7}",
            flush=True,
        )
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
