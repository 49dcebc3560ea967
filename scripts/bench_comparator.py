"""What the many-step comparator (issue 17) costs: the engine with and without it, against one GD step, on a real
trajectory.

For each size ``N = d = n`` (float32, one process, side by side) spikelearn's network is trained with its own data
module (``he1``, fresh batches): ``η = (N^0.35, 2 N^0.4)``, then ``--small-steps`` steps of ``0.1 N^0.25``. Every
``W_t`` goes through one :class:`~spikelearn.functional.engine.SpectralTracker` as the monitor runs it, and each
analysis is timed twice from the same tracker state: as shipped, and with ``EngineConfig(comparator=False)`` (no
measured bulk, D-transform, basis or strengths). Printed: process CPU time per analysis over one GD step for both, and
their ratio; the measured bulk's source (full spectrum up to ``min(N, d) = 256``, stochastic Lanczos above).

    python scripts/bench_comparator.py                       # N = 512, 1024, 2048 (about a minute on one core)
    python scripts/bench_comparator.py --sizes 4096 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_spectral import _cpu_timeit  # noqa: E402

from spikelearn.functional import engine  # noqa: E402
from spikelearn.functional.inputs import EngineConfig, TheoryInputs  # noqa: E402


def _without(tracker: engine.SpectralTracker, config: EngineConfig) -> engine.SpectralTracker:
    # the same state, the comparator off
    copied = copy.deepcopy(tracker)
    copied.config = config
    return copied


def bench_size(size: int, repeats: int, small_steps: int, seed: int = 0) -> list[dict[str, object]]:
    """One row per analysed step: CPU time with and without the comparator, over one GD step."""
    from spikelearn.data import GaussianDataModule
    from spikelearn.functional import model as F
    from spikelearn.functional.activations import get_activation

    g = torch.Generator().manual_seed(seed)
    N = d = n = size
    W = F.init_first_layer(N, d, g, "gaussian")
    a = F.init_second_layer(N, g, "gaussian")
    act = get_activation("shifted_tanh")
    data = GaussianDataModule(input_dim=d, batch_size=n, target="he1", seed=seed)
    schedule = [(1.0, 0.35), (2.0, 0.4)] + [(0.1, 0.25)] * small_steps
    X1, y1, _ = data.full_batch(1)
    step_s, _ = _cpu_timeit(lambda: F.negative_gradient(W, a, X1, y1, act), repeats)
    tracker = engine.SpectralTracker(EngineConfig(threads=1))
    off = EngineConfig(threads=1, comparator=False)
    rows = []
    for t in range(len(schedule) + 1):
        if t:
            X, y, _ = data.full_batch(t)
            W = F.gradient_step(W, F.negative_gradient(W, a, X, y, act), schedule[t - 1][0] * N ** schedule[t - 1][1])
        theory = TheoryInputs(a=a, alphas=[al for _, al in schedule[:t]])
        before = copy.deepcopy(tracker)
        with_s, _ = _cpu_timeit(lambda: copy.deepcopy(before).update(W, t, theory), repeats, 1)
        without_s, _ = _cpu_timeit(lambda: _without(before, off).update(W, t, theory), repeats, 1)
        record = tracker.update(W, t, theory).record()
        rows.append({"size": size, "step": t, "outliers": record["outliers"],
                     "comparator": record["predicted_outliers_finite_n"], "bulk": record["comparator_bulk"],
                     "with": with_s / step_s, "without": without_s / step_s, "ratio": with_s / without_s,
                     "step_ms": 1e3 * step_s})
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the GD step's; the engine runs on 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.2f}; CPU time per analysis / one GD step (median of {args.repeats})")
    print(f"{'N':>6} {'t':>3} {'out':>4} {'cmp':>4} {'bulk':<19} {'GD ms':>8} {'with':>7} {'without':>8} {'ratio':>6}")
    rows = []
    for size in args.sizes:
        for r in bench_size(size, args.repeats, args.small_steps):
            rows.append(r)
            print(f"{r['size']:>6} {r['step']:>3} {r['outliers']:>4} {str(r['comparator']):>4} {str(r['bulk']):<19} "
                  f"{r['step_ms']:>8.1f} {r['with']:>7.3f} {r['without']:>8.3f} {r['ratio']:>6.2f}")
    return rows


if __name__ == "__main__":
    main()
