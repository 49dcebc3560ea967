"""The main job: a two-step experiment on CPU in about a minute, measured against the theory.

Trains ``f(x) = a·σ(Wx)/√N`` (shifted tanh, ``N = d = n``) for two full-batch steps of size
``η_t = c_t N^{α_t}`` on an IE-1 target (``he1``), once with reused and once with independent batches,
with :class:`spikelearn.callbacks.SpectrumMonitor` attached. It prints, per step: the measured outliers
(total / after deflating the first-step direction), the predictions (asymptotic
``1 + ⌊α₂/(½ − α₁)⌋`` and the finite-N BGN count), the top singular values and the energy of each target
direction captured by the outlier subspace (random baseline ``n_out/d``); then where the TensorBoard logs,
the figures, ``spectra.jsonl`` and the CSV table are, and the monitor's overhead per analysed step as a
ratio to one GD step.

    python scripts/demo.py                       # N = d = n = 2048, both batch modes (~1 min on 2 cores)
    python scripts/demo.py --size 512 --batches reused --out-dir /tmp/demo
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

import lightning as L  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from spikelearn.callbacks import RECORD_FILENAME, Cadence, RunSummary, SpectrumMonitor, summary_table  # noqa: E402
from spikelearn.callbacks.summary import print_table  # noqa: E402
from spikelearn.data import BATCH_MODES, GaussianDataModule  # noqa: E402
from spikelearn.functional.theory import predicted_outlier_count  # noqa: E402
from spikelearn.module import TwoLayerModule  # noqa: E402

__all__ = ["main", "parse_args"]

TABLE_NAME = "demo_table.csv"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048, help="N = d = n (default 2048)")
    parser.add_argument("--width", type=int, default=None, help="N (default --size)")
    parser.add_argument("--input-dim", type=int, default=None, help="d (default --size)")
    parser.add_argument("--batch-size", type=int, default=None, help="n (default --size)")
    parser.add_argument("--steps", type=int, default=2, help="gradient steps (default 2; the theory's count is for 2)")
    parser.add_argument("--step-c", type=float, nargs="+", default=[1.0, 2.0], help="c_1 c_2 ... (default 1 2)")
    parser.add_argument("--step-alpha", type=float, nargs="+", default=[0.35, 0.4], help="α_1 α_2 ... (default 0.35 0.4)")
    parser.add_argument("--batches", nargs="+", default=["reused", "independent"], choices=[m for m in BATCH_MODES if m != "resample_every"])
    parser.add_argument("--target", default="he1", help="target name (default he1, information exponent 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="runs/demo", help="where logs, figures, records and the table go (default runs/demo)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("size", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if len(args.step_c) != len(args.step_alpha):
        parser.error(f"--step-c and --step-alpha need the same number of entries, got {len(args.step_c)} and {len(args.step_alpha)}")
    return args


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No Lightning banners or tips, and none of the warnings every short full-batch CPU run triggers."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for message in (
                ".*does not have many workers.*", ".*LeafSpec.*", ".*GPU available but not used.*",
                ".*outside the theory.*", ".*litlogger.*", ".*litmodels.*",
            ):
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class _Timer(L.Callback):
    """Wall time of each optimizer step (batch start → first batch-end hook) and of the monitor's hook."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self.step_seconds: list[float] = []
        self.monitor_seconds: list[float] = []
        self._start = self._after_step = 0.0
        self.progress, self.task = progress, task

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._after_step = time.perf_counter()
        self.step_seconds.append(self._after_step - self._start)


class _AfterMonitor(L.Callback):
    """Placed after the monitor: closes the monitor's time interval and advances the progress bar."""

    def __init__(self, timer: _Timer) -> None:
        self.timer = timer

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.timer.monitor_seconds.append(time.perf_counter() - self.timer._after_step)
        if self.timer.progress is not None:
            self.timer.progress.advance(self.timer.task)


def _run(args: argparse.Namespace, batches: str, out_dir: Path, progress: Any, task: Any) -> tuple[SpectrumMonitor, _Timer, Path]:
    N = args.width or args.size
    d = args.input_dim or args.size
    n = args.batch_size or args.size
    module = TwoLayerModule(width=N, input_dim=d, step_c=args.step_c, step_alpha=args.step_alpha, seed=args.seed)
    data = GaussianDataModule(input_dim=d, batch_size=n, batches=batches, target=args.target, seed=args.seed)
    monitor = SpectrumMonitor(figures=Cadence(first_k=args.steps, every_n_steps=max(args.steps, 1)))
    timer = _Timer(progress, task)
    # TensorBoard as `spikelearn fit` lays it out: the custom-scalars layout and the real HPARAMS metrics of
    # RunSummary (which prints nothing here: the demo prints its own table), no placeholder hp_metric
    logger = TensorBoardLogger(out_dir, name=batches, version="", default_hp_metric=False)
    trainer = L.Trainer(
        max_steps=args.steps, max_epochs=-1, accelerator="cpu", devices=1, logger=logger,
        callbacks=[timer, monitor, _AfterMonitor(timer), RunSummary(print_table=False)], enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0, log_every_n_steps=1, use_distributed_sampler=False,
    )
    trainer.fit(module, data)
    return monitor, timer, Path(logger.log_dir)


def _rows(batches: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "batches": batches, "step": r["step"], "eta": r["eta"], "outliers": r["outliers"],
            "outliers_deflated": r["outliers_deflated"], "predicted_outliers": r["predicted_outliers"],
            "predicted_outliers_deflated": r["predicted_outliers_deflated"],
            "predicted_outliers_finite_n": r["predicted_outliers_finite_n"],
            "bulk_edge": r["bulk_edge"], "bulk_edge_theory": r["bulk_edge_theory"],
        }
        for i, value in enumerate(r["singular_values"][:4]):
            row[f"s_{i + 1}"] = value
        for j, value in enumerate(r["captured_energy"] or []):
            row[f"captured_energy_beta_{j}"] = value
        row["captured_energy_baseline"] = r["captured_energy_baseline"]
        rows.append(row)
    return rows


def _print_table(runs: dict[str, list[dict[str, Any]]], out: Any) -> None:
    """The table ``spikelearn fit`` prints at its end (:func:`spikelearn.callbacks.summary_table`), one block per mode."""
    print_table(summary_table(runs, group="batches"), file=out)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the demo; returns the table's rows (also written to ``<out-dir>/demo_table.csv``)."""
    args = parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    N, d, n = args.width or args.size, args.input_dim or args.size, args.batch_size or args.size
    alphas = args.step_alpha
    law = ""
    if len(alphas) >= 2 and 0 <= alphas[0] < 0.5:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an α outside [0, 1/2) is reported in the table's prediction column
            law = f"; law after step 2: 1 + ⌊α₂/(½ − α₁)⌋ = {predicted_outlier_count(alphas[:2]).total}"
    print(f"spikelearn demo: N={N}, d={d}, n={n} (c = N/d = {N / d:.3g}), {args.steps} steps, "
          f"c_t={args.step_c}, α_t={alphas}, target {args.target}{law}")
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    timings: list[tuple[float, float, float]] = []  # (GD step, monitor hook, engine only) per analysed step
    places: list[tuple[str, Path]] = []
    runs: dict[str, list[dict[str, Any]]] = {}
    with _quiet(), _progress(not args.no_progress) as progress:
        for batches in args.batches:
            task = None if progress is None else progress.add_task(f"{batches} batches", total=args.steps)
            monitor, timer, log_dir = _run(args, batches, out_dir, progress, task)
            rows += _rows(batches, monitor.history)
            runs[batches] = list(monitor.history)
            engine = [r["analysis_seconds"] for r in monitor.history if r["step"] > 0]
            timings += list(zip(timer.step_seconds, timer.monitor_seconds, engine))
            places.append((batches, log_dir))
    wall = time.perf_counter() - start
    print()
    _print_table(runs, sys.stdout)
    table = out_dir / TABLE_NAME
    with open(table, "w", newline="") as handle:
        fields = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print()
    if timings:
        step_s = statistics.median(t[0] for t in timings)
        hook_s = statistics.median(t[1] for t in timings)
        engine_s = statistics.median(t[2] for t in timings)
        print(f"monitor overhead per analysed step: {hook_s:.2f} s with histogram + figure "
              f"({hook_s / step_s:.1f}x one GD step of {step_s:.2f} s), spectral engine alone {engine_s:.2f} s "
              f"({engine_s / step_s:.1f}x)")
    print(f"done in {wall:.0f} s.")
    print(f"TensorBoard:   tensorboard --logdir {out_dir}")
    for batches, log_dir in places:
        figure = log_dir / "figures" / f"spectrum_W_step{args.steps:06d}.png"
        print(f"{batches + ':':<13}  {log_dir / RECORD_FILENAME}   figure {figure}")
    print(f"table (CSV):   {table}")
    print("load the record with:  pandas.read_json(path, lines=True)")
    return rows


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                  TimeElapsedColumn(), transient=False) as progress:
        yield progress


if __name__ == "__main__":
    main()
