"""Time one full-batch GD step: spikelearn's Lightning module vs a bare torch loop, side by side.

Both loops draw the step's batch with the same data module and apply ``W ← W + η√N G(W)`` by autograd of the
same loss and ``torch.optim.SGD``; the bare loop is a plain ``for`` loop, the other goes through ``Trainer.fit``
(loader, hooks, logging, LR scheduler), so the ratio is the framework's overhead. Per-step times are the
median over ``--steps`` steps after one warm-up step. Prints the ratio Lightning / bare.

    python scripts/bench_step.py --size 2048 --steps 6
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import lightning as L
import torch

from spikelearn.data import GaussianDataModule
from spikelearn.functional import loss
from spikelearn.module import TwoLayerModule


class _StepTimer(L.Callback):
    """Wall time between consecutive step ends: loader, batch draw, forward, backward, update, logging."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._last = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.durations.append(now - self._last)
        self._last = now


def _bare_loop(size: int, steps: int) -> list[float]:
    module = TwoLayerModule(width=size, input_dim=size)
    data = GaussianDataModule(input_dim=size, batch_size=size)
    W = module.W
    optimizer = torch.optim.SGD([W], lr=1.0)
    durations = []
    for step in range(1, steps + 1):
        start = time.perf_counter()
        X, y, _ = data.full_batch(step)
        for group in optimizer.param_groups:
            group["lr"] = module.eta(step) * size**0.5
        optimizer.zero_grad()
        loss(W, module.a, X, y, module.activation).backward()
        optimizer.step()
        durations.append(time.perf_counter() - start)
    return durations


def _lightning_loop(size: int, steps: int) -> list[float]:
    timer = _StepTimer()
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                        accelerator="cpu", devices=1, callbacks=[timer])
    trainer.fit(TwoLayerModule(width=size, input_dim=size), GaussianDataModule(input_dim=size, batch_size=size))
    return timer.durations


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="N = d = n (default 2048)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per loop, after one warm-up (default 6)")
    args = parser.parse_args(argv)
    if args.size < 1 or args.steps < 1:
        parser.error("--size and --steps must be >= 1")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    bare = statistics.median(_bare_loop(args.size, args.steps + 1)[1:])
    lightning = statistics.median(_lightning_loop(args.size, args.steps + 1)[1:])
    result = {"size": args.size, "threads": torch.get_num_threads(), "bare_step_s": bare, "lightning_step_s": lightning,
              "ratio": lightning / bare}
    print(f"N = d = n = {args.size}, float32, {result['threads']} threads, median of {args.steps} steps")
    print(f"  bare torch step      {bare:8.4f} s")
    print(f"  Lightning step       {lightning:8.4f} s")
    print(f"  ratio Lightning/bare {result['ratio']:8.3f}")
    return result


if __name__ == "__main__":
    main()
