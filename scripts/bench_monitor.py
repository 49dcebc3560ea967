"""SpectrumMonitor overhead per analysed step, as a ratio to one GD step of the same size.

Runs ``--steps`` full-batch steps of the two-layer module (``N = d = n = --size``) with the monitor in two
configurations — *lean* (record + scalars only: the spectral engine, warm-started) and *full* (plus the
full-spectrum histogram and the figure at every step) — and times, per step, the optimizer step (batch start
to the first batch-end hook) and the monitor's hook (from the hook before it to the hook after it). Prints
medians and ratios; :func:`monitor_overhead` returns them.

    python scripts/bench_monitor.py --size 2048 --steps 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L

from spikelearn.callbacks import Cadence, SpectrumMonitor
from spikelearn.data import GaussianDataModule
from spikelearn.module import TwoLayerModule

__all__ = ["main", "monitor_overhead"]


class _Before(L.Callback):
    def __init__(self) -> None:
        self.step_seconds: list[float] = []
        self.hook_seconds: list[float] = []
        self.start = self.mark = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.mark = time.perf_counter()
        self.step_seconds.append(self.mark - self.start)


class _After(L.Callback):
    def __init__(self, before: _Before) -> None:
        self.before = before

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.before.hook_seconds.append(time.perf_counter() - self.before.mark)


def _fit(size: int, steps: int, batches: str, monitor: SpectrumMonitor) -> tuple[list[float], list[float], list[float]]:
    module = TwoLayerModule(width=size, input_dim=size, step_c=(1.0, 2.0), step_alpha=(0.35, 0.4))
    data = GaussianDataModule(input_dim=size, batch_size=size, batches=batches)
    before = _Before()
    trainer = L.Trainer(
        max_steps=steps, max_epochs=-1, accelerator="cpu", devices=1, logger=False,
        callbacks=[before, monitor, _After(before)], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0, use_distributed_sampler=False,
    )
    trainer.fit(module, data)
    engine = [r["analysis_seconds"] for r in monitor.history if r["step"] > 0]
    return before.step_seconds, before.hook_seconds, engine


def monitor_overhead(size: int = 2048, steps: int = 3, batches: str = "reused") -> dict[str, float]:
    """Median seconds of one GD step and of the monitor per analysed step (lean and full), and their ratios."""
    out: dict[str, float] = {"size": float(size)}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for level in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(level).setLevel(logging.ERROR)
        for name, options in (
            ("lean", {"histograms": False, "figures": False, "save_figures": False}),
            ("full", {"figures": Cadence(first_k=steps)}),
        ):
            step_s, hook_s, engine_s = _fit(size, steps, batches, SpectrumMonitor(dirpath=f"{tmp}/{name}", **options))
            gd = statistics.median(step_s)
            out[f"gd_step_s_{name}_run"] = gd
            out[f"monitor_s_{name}"] = statistics.median(hook_s)
            out[f"engine_s_{name}"] = statistics.median(engine_s)
            out[f"ratio_{name}"] = out[f"monitor_s_{name}"] / gd
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batches", default="reused", choices=["reused", "independent"])
    args = parser.parse_args(argv)
    result = monitor_overhead(args.size, args.steps, args.batches)
    for name in ("lean", "full"):
        print(
            f"{name:>4}: monitor {result[f'monitor_s_{name}']:.3f} s per analysed step (engine {result[f'engine_s_{name}']:.3f} s) "
            f"= {result[f'ratio_{name}']:.2f}x one GD step ({result[f'gd_step_s_{name}_run']:.3f} s), N = d = n = {args.size}"
        )
    return result


if __name__ == "__main__":
    main()
