"""How many CPU threads the spectral engine should use (issue 20): one analysis timed on each thread count, A/B.

It builds the trajectory of ``bench_spectral.py`` (spike-birth steps ``η = (N^0.35, 2 N^0.4)``, then small steps
``0.1 N^0.25``) at ``N = d = n = --size``, and times the analysis of each step with
``EngineConfig(threads=t)`` for every ``t`` of ``--threads``, the caller on torch's default thread count, in
interleaved rounds (so a change of the machine's load hits every ``t`` alike). It prints per step and thread count
the **minimum** wall time over the rounds (the closest a shared machine gets to a quiet one), the median, and the
median process CPU time, with the load average. ``--load K`` adds K bounded competitor processes.

    python scripts/bench_threads.py --size 2048 --rounds 7
    python scripts/bench_threads.py --size 2048 --rounds 5 --load 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Sequence

import torch
from _competitors import competing_load, load_average

from spikelearn.data import GaussianDataModule
from spikelearn.functional import model as F
from spikelearn.functional.activations import get_activation
from spikelearn.functional.engine import SpectralTracker
from spikelearn.functional.inputs import EngineConfig, TheoryInputs

__all__ = ["main", "trajectory"]


def trajectory(size: int, seed: int = 0, small_steps: int = 2) -> list[tuple[torch.Tensor, TheoryInputs]]:
    """``(W_t, theory)`` for t = 0 … 2 + ``small_steps`` (float32, CPU), as ``bench_spectral.py`` trains them."""
    g = torch.Generator().manual_seed(seed)
    W = F.init_first_layer(size, size, g, "gaussian")
    a = F.init_second_layer(size, g, "gaussian")
    act = get_activation("shifted_tanh")
    data = GaussianDataModule(input_dim=size, batch_size=size, target="he1", seed=seed)
    schedule = [(1.0, 0.35), (2.0, 0.4)] + [(0.1, 0.25)] * small_steps
    out = []
    for t in range(len(schedule) + 1):
        if t:
            X, y, _ = data.full_batch(t)
            W = F.gradient_step(W, F.negative_gradient(W, a, X, y, act), schedule[t - 1][0] * size ** schedule[t - 1][1])
        out.append((W, TheoryInputs(a=a, alphas=[al for _, al in schedule[:t]], B=data.directions.float())))
    return out


def main(argv: Sequence[str] | None = None) -> dict[int, list[dict[str, float]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="EngineConfig.threads to compare")
    parser.add_argument("--load", type=int, default=0, metavar="K", help="K CPU-bound competitor processes")
    args = parser.parse_args(argv)
    steps = trajectory(args.size)
    # each step's tracker state as the monitor would hold it (the previous steps analysed)
    states, tracker = [], SpectralTracker(EngineConfig())
    for t, (W, theory) in enumerate(steps):
        states.append(copy.deepcopy(tracker.state))
        tracker.update(W, t, theory)
    print(f"N = d = n = {args.size}, caller on {torch.get_num_threads()} threads, {args.load} competitors, "
          f"load average {load_average()}")
    wall: dict[tuple[int, int], list[float]] = {}
    cpu: dict[tuple[int, int], list[float]] = {}
    with competing_load(args.load):
        for _ in range(args.rounds):
            for t, (W, theory) in enumerate(steps):
                for threads in args.threads:
                    engine = SpectralTracker(EngineConfig(threads=threads))
                    engine.state = states[t]
                    c0, w0 = time.process_time(), time.perf_counter()
                    engine.update(W, t, theory)
                    wall.setdefault((t, threads), []).append(time.perf_counter() - w0)
                    cpu.setdefault((t, threads), []).append(time.process_time() - c0)
        after = load_average()
    print(f"{'step':>4} " + " ".join(f"{f'{n} thr min/med wall, CPU ms':>30}" for n in args.threads))
    rows: dict[int, list[dict[str, float]]] = {}
    for t in range(len(steps)):
        cells = []
        for n in args.threads:
            w, c = wall[(t, n)], cpu[(t, n)]
            rows.setdefault(n, []).append({"step": t, "min_wall_s": min(w), "median_wall_s": statistics.median(w),
                                           "median_cpu_s": statistics.median(c)})
            cells.append(f"{1e3 * min(w):>12.0f} / {1e3 * statistics.median(w):>5.0f}, {1e3 * statistics.median(c):>6.0f}")
        print(f"{t:>4} " + " ".join(f"{cell:>30}" for cell in cells), flush=True)
    print(f"load average after: {after}")
    return rows


if __name__ == "__main__":
    main()
