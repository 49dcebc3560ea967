"""Check the float32 engine's counts against the float64 rule along real trajectories (truth from outside).

For each of four training schedules (``he1`` with small steps after the spike-birth steps, ``he2+he3`` on reused
batches, ``he1`` with a large constant tail, ``bounded_he2``) it trains spikelearn's network with its own data module
in float64, analyses every ``W_t`` in float32 with one :class:`~spikelearn.functional.engine.SpectralTracker`
(warm start, cached products, as the monitor runs it), and compares the count and the outlier statuses with
:func:`~spikelearn.functional.outliers.detect_outliers` on the float64 full spectrum of the same ``W_t``. Prints
one line per schedule (``count(columns multiplied)`` per step, ``!=`` where they differ) and the tally.

Example::

    python scripts/validate_counts.py --size 1024
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

SCHEDULES: list[tuple[str, str, list[tuple[float, float]], str]] = [
    ("he1, c = (1, 2), α = (0.35, 0.4), 6 small steps", "he1", [(1, 0.35), (2, 0.4)] + [(0.1, 0.25)] * 6,
     "independent"),
    ("he2+he3, c = (1, 2), α = (0.3, 0.45), reused", "he2+he3", [(1, 0.3), (2, 0.45)] + [(0.5, 0.3)] * 4, "reused"),
    ("he1, c = (1, 3), α = (0.4, 0.45), large tail", "he1", [(1, 0.4), (3, 0.45)] + [(1, 0.4)] * 6, "independent"),
    ("bounded_he2, c = (2, 2), α = (0.3, 0.45), reused", "bounded_he2", [(2, 0.3), (2, 0.45)] + [(0.3, 0.3)] * 4,
     "reused"),
]
"""(name, target, [(c_t, α_t), ...], batches) of each trajectory."""


def validate_schedule(size: int, target: str, schedule: Sequence[tuple[float, float]], batches: str,
                      seed: int = 1) -> list[dict[str, object]]:
    """Per step: the tracker's count and statuses, the float64 rule's, and the columns multiplied."""
    from spikelearn.data import GaussianDataModule
    from spikelearn.functional import model as F
    from spikelearn.functional.activations import get_activation
    from spikelearn.functional.engine import SpectralTracker
    from spikelearn.functional.inputs import EngineConfig, TheoryInputs
    from spikelearn.functional.outliers import detect_outliers

    g = torch.Generator().manual_seed(seed)
    W = F.init_first_layer(size, size, g, "gaussian").to(torch.float64)
    a = F.init_second_layer(size, g, "gaussian").to(torch.float64)
    act = get_activation("shifted_tanh")
    data = GaussianDataModule(input_dim=size, batch_size=size, target=target, seed=seed, batches=batches)
    tracker, rows = SpectralTracker(EngineConfig(k=32)), []
    for t in range(len(schedule) + 1):
        if t:
            X, y, _ = data.full_batch(t, dtype=torch.float64)
            c, alpha = schedule[t - 1]
            W = F.gradient_step(W, F.negative_gradient(W, a, X, y, act), c * size**alpha)
        summary = tracker.update(W.float(), t, TheoryInputs(a=a.float(), alphas=[al for _, al in schedule[:t]])).record()
        reference = detect_outliers(torch.linalg.svdvals(W)[:128], N=size, d=size, frobenius_sq=float(W.square().sum()))
        rows.append({"step": t, "outliers": summary["outliers"], "status": summary["outlier_status"],
                     "reference": reference.count, "reference_status": reference.status, "matvecs": summary["matvecs"]})
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, list[dict[str, object]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="N = d = n")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results, equal, total = {}, 0, 0
    for name, target, schedule, batches in SCHEDULES:
        rows = validate_schedule(args.size, target, schedule, batches)
        results[name] = rows
        cells = []
        for r in rows:
            same = (r["outliers"], r["status"]) == (r["reference"], r["reference_status"])
            equal, total = equal + same, total + 1
            cells.append(f"{r['outliers']}{'' if same else ' != ' + str(r['reference'])}({r['matvecs']})")
        print(f"{name}: {' '.join(cells)}", flush=True)
    print(f"N = {args.size}: {equal}/{total} steps equal to the float64 rule (count and statuses)")
    return results


if __name__ == "__main__":
    main()
