"""Benchmark the singular-value density (stochastic Lanczos quadrature) against one GD step (issue 10, item 3).

For each size ``N = d = n`` (float32, one process, side by side) it builds a two-step trajectory with the
shifted-tanh network (``W_t = W_{t-1} + eta_t sqrt(N) G(W_{t-1})``, ``G`` from
:func:`spikelearn.functional.model.negative_gradient`, as ``scripts/bench_spectral.py`` does) and times on ``W2``:

* one GD step: ``negative_gradient(W1, a, X2, y2)``, the forward GEMM and the ``(n, N)^T (n, d)`` GEMM,
* ``singular_value_density(W2, top_values=s[:k], top_vectors=V[:, :k])`` with its defaults, the exact top
  values and right vectors being what the spectral tracker already holds (their cost is not counted),
* the same without ``top_values`` (pure SLQ),
* the exact full spectrum ``singular_values_full(W2)`` (float64 Gram + ``eigvalsh``, what the histogram
  used before),

and prints each as wall time (median of ``--repeats`` after a warm-up, ``bench_spectral._timeit``) and as CPU
time (process time per call, less sensitive to other jobs on a shared machine), the ratios to the GD step, and
the Kolmogorov distance between the density's CDF and the exact spectrum.

Example::

    python scripts/bench_density.py --sizes 2048 4096 --threads 1
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_spectral import _timeit  # noqa: E402

from spikelearn.functional.activations import get_activation  # noqa: E402
from spikelearn.functional.density import SpectralDensity, singular_value_density  # noqa: E402
from spikelearn.functional.model import negative_gradient  # noqa: E402
from spikelearn.functional.spectral import singular_values_full, top_singular_triplets  # noqa: E402


def _times(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median wall seconds, mean CPU seconds) of one call; CPU time covers the warm-up and the repeats."""
    cpu0 = time.process_time()
    wall = _timeit(fn, repeats)
    return wall, (time.process_time() - cpu0) / (repeats + 1)


def kolmogorov_distance(rho: SpectralDensity, s: torch.Tensor) -> float:
    """``sup_t |F_hat(t) - F_n(t)|`` against the exact singular values ``s`` (attained at a jump of ``F_n``)."""
    s = s.to(torch.float64).sort().values
    n = s.numel()
    F = rho.cdf(s)
    i = torch.arange(1, n + 1, dtype=torch.float64, device=F.device)
    return float(torch.maximum((F - i / n).abs(), (F - (i - 1) / n).abs()).max())


def bench_size(size: int, repeats: int, k: int, seed: int = 0) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    N = d = n = size
    act = get_activation("shifted_tanh")
    W0 = torch.randn(N, d, generator=g) / math.sqrt(d)
    a = torch.randn(N, generator=g) / math.sqrt(N)
    beta = torch.linalg.qr(torch.randn(d, 1, generator=g))[0][:, 0]  # (d,)
    X1, X2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    target = lambda X: X @ beta + ((X @ beta) ** 2 - 1) / math.sqrt(2)  # noqa: E731
    y1, y2 = target(X1), target(X2)
    eta = [N**0.3, N**0.25]
    W1 = W0 + eta[0] * math.sqrt(N) * negative_gradient(W0, a, X1, y1, act)
    W2 = W1 + eta[1] * math.sqrt(N) * negative_gradient(W1, a, X2, y2, act)

    step = _times(lambda: negative_gradient(W1, a, X2, y2, act), repeats)
    top = top_singular_triplets(W2, k)  # what the tracker holds
    with_top = lambda: singular_value_density(W2, top_values=top.values, top_vectors=top.right)  # noqa: E731
    t_density = _times(with_top, repeats)
    t_plain = _times(lambda: singular_value_density(W2), repeats)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    exact = singular_values_full(W2)
    t_full = (time.perf_counter() - start_wall, time.process_time() - start_cpu)
    rho = with_top()
    return {
        "size": size,
        "step_wall": step[0],
        "step_cpu": step[1],
        "density_wall": t_density[0],
        "density_cpu": t_density[1],
        "plain_wall": t_plain[0],
        "plain_cpu": t_plain[1],
        "full_wall": t_full[0],
        "full_cpu": t_full[1],
        "products": rho.products,
        "ks": kolmogorov_distance(rho, exact),
        "ks_plain": kolmogorov_distance(singular_value_density(W2), exact),
        "top": k,
    }


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=16, help="exact top values/vectors given to the density")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float32, CPU; "
          f"singular_value_density defaults (8 probes, 16 Lanczos steps = 32 products), top k = {args.k}")
    print(f"{'N=d=n':>6} {'GD step s':>15} {'density (top k)':>22} {'density (no top)':>22} "
          f"{'singular_values_full':>26} {'KS (top k)':>10} {'KS (no top)':>11}")
    print(f"{'':>6} {'wall / cpu':>15} {'wall / cpu, % of step':>22} {'wall / cpu, % of step':>22} "
          f"{'wall / cpu s, x step':>26}")
    rows = []
    for size in args.sizes:
        r = bench_size(size, args.repeats, args.k)
        rows.append(r)
        full_ratio = f"{r['full_wall'] / r['step_wall']:.1f}x/{r['full_cpu'] / r['step_cpu']:.1f}x"
        print(
            f"{size:>6} {r['step_wall']:>7.3f}/{r['step_cpu']:<7.3f} "
            f"{r['density_wall'] / r['step_wall']:>10.1%} / {r['density_cpu'] / r['step_cpu']:<9.1%} "
            f"{r['plain_wall'] / r['step_wall']:>10.1%} / {r['plain_cpu'] / r['step_cpu']:<9.1%} "
            f"{r['full_wall']:>7.2f}/{r['full_cpu']:<6.2f} {full_ratio:>12} "
            f"{r['ks']:>10.4f} {r['ks_plain']:>11.4f}",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    main()
