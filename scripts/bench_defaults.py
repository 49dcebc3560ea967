"""What ``SpectrumMonitor()`` with its default cadences adds to a whole run (issue 10, item 4).

Two workloads, each fitted twice side by side in one process — without a monitor and with the default monitor
(TensorBoard logger in both, so logging the record, histograms and figures is counted):

* **two-layer**: spikelearn's network at ``N = d = n = --size``, fresh batches, ``c = (1, 1)``, ``α = (0.3, 0.45)``
  then a constant tail, ``--steps`` full-batch steps; ``SpectrumMonitor()`` with no arguments.
* **mlp**: the README's "any Lightning model" example: a 64-256-10 ReLU MLP with cross-entropy and SGD on a
  digits-sized synthetic problem (1797 samples of 64 features, 10 Gaussian classes, mini-batches of 64),
  ``--mlp-steps`` steps; ``SpectrumMonitor(params=["net.0.weight", "net.2.weight"])``, defaults otherwise.

It prints, per workload, the fit's wall time and process CPU time with and without the monitor and the overhead
``(with - without) / without``, the steps the monitor analysed, and the machine's load average. Use ``--threads 1``
on a busy machine: process CPU time on one thread is what stays comparable when other jobs run.

    python scripts/bench_defaults.py --size 4096 --steps 12 --threads 1
    python scripts/bench_defaults.py --previous-defaults   # spikelearn 0.1's defaults, for the before/after

``--previous-defaults`` measures the cadences the monitor had before issue 10: every step analysed and
histogrammed, figures at steps 0-3 and every 10.

``--load K`` (issue 20) fits each workload twice in the same run, quiet and then beside ``K`` bounded CPU-bound
competitor processes (``scripts/_competitors.py``), and prints the two side by side: the bare fit's and the
monitored fit's wall time and the monitor's ratio to the bare fit. ``--engine-threads`` sets the monitor's
``EngineConfig.threads`` (``0``: no bound).

    python scripts/bench_defaults.py --size 2048 --steps 12 --only two-layer --load 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from _competitors import competing_load, load_average
from lightning.pytorch.loggers import TensorBoardLogger

from spikelearn.callbacks import Cadence, SpectrumMonitor
from spikelearn.data import GaussianDataModule
from spikelearn.functional.inputs import EngineConfig
from spikelearn.module import TwoLayerModule

__all__ = ["DigitsLikeMLP", "PREVIOUS_DEFAULTS", "main", "run_overhead"]

PREVIOUS_DEFAULTS = {"analyses": Cadence(every_n_steps=1, last_step=False), "histograms": Cadence(every_n_steps=1),
                     "figures": Cadence(first_k=3, every_n_steps=10)}
"""SpectrumMonitor's cadences before issue 10 (every step analysed and histogrammed, figures 0-3 and every 10)."""


class DigitsLikeMLP(L.LightningModule):
    """A 64-256-10 ReLU MLP trained by SGD on a digits-sized synthetic classification problem."""

    def __init__(self, samples: int = 1797, features: int = 64, hidden: int = 256, classes: int = 10,
                 batch_size: int = 64, lr: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        means = 2.0 * torch.randn(classes, features, generator=generator)
        labels = torch.randint(classes, (samples,), generator=generator)
        self.inputs = means[labels] + torch.randn(samples, features, generator=generator)  # (samples, features)
        self.labels = labels
        self.batch_size, self.lr = batch_size, lr
        self.net = torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        dataset = torch.utils.data.TensorDataset(self.inputs, self.labels)
        return torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, shuffle=True,
                                           generator=torch.Generator().manual_seed(1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


_HOOKS = ("setup", "on_train_start", "on_train_batch_start", "on_train_batch_end", "state_dict")


def _time_hooks(monitor: SpectrumMonitor) -> dict[str, float]:
    """Wrap the monitor's hooks (on the instance) to add their process CPU time to the returned counter."""
    spent = {"cpu_s": 0.0}
    for name in _HOOKS:
        hook = getattr(monitor, name)

        def timed(*args: Any, _hook: Callable[..., Any] = hook, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return _hook(*args, **kwargs)
            finally:
                spent["cpu_s"] += time.process_time() - start

        setattr(monitor, name, timed)
    return spent


def _fit(root: str, steps: int, build: Callable[[], tuple[L.LightningModule, Any]], monitor: SpectrumMonitor | None) -> dict[str, float]:
    spent = _time_hooks(monitor) if monitor is not None else {"cpu_s": 0.0}
    model, data = build()
    trainer = L.Trainer(
        max_steps=steps, max_epochs=-1, accelerator="cpu", devices=1, logger=TensorBoardLogger(root, name="bench"),
        callbacks=[] if monitor is None else [monitor], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0, log_every_n_steps=1,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(model, data) if data is not None else trainer.fit(model)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "hooks_cpu_s": spent["cpu_s"],
            "analysed": len({r["step"] for r in monitor.history}) if monitor is not None else 0}


def run_overhead(name: str, steps: int, build: Callable[[], tuple[L.LightningModule, Any]],
                 monitor: Callable[[str], SpectrumMonitor], repeats: int = 1) -> dict[str, float]:
    """Median wall and CPU seconds of ``repeats`` fits without and with ``monitor``, and the overheads."""
    runs: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):  # interleaved, so a change of load hits both sides
            runs["without"].append(_fit(f"{tmp}/without{r}", steps, build, None))
            runs["with"].append(_fit(f"{tmp}/with{r}", steps, build, monitor(f"{tmp}/with{r}/record")))
    out: dict[str, float] = {"steps": steps, "analysed": runs["with"][0]["analysed"]}
    for side, rows in runs.items():
        for key in ("wall_s", "cpu_s"):
            out[f"{key}_{side}"] = statistics.median(row[key] for row in rows)
    for key in ("wall_s", "cpu_s"):
        out[f"overhead_{key[:-2]}"] = out[f"{key}_with"] / out[f"{key}_without"] - 1.0
    # the same run's own split: CPU time inside the monitor's hooks over the rest of that fit (robust to the
    # run-to-run spread of the fit itself, which the with/without difference is not)
    out["overhead_hooks"] = statistics.median(row["hooks_cpu_s"] / (row["cpu_s"] - row["hooks_cpu_s"]) for row in runs["with"])
    print(f"{name}: {steps} steps, monitor analysed {out['analysed']:.0f} of them; "
          f"wall {out['wall_s_without']:.2f} s -> {out['wall_s_with']:.2f} s (+{100 * out['overhead_wall']:.1f} %), "
          f"CPU {out['cpu_s_without']:.2f} s -> {out['cpu_s_with']:.2f} s (+{100 * out['overhead_cpu']:.1f} %); "
          f"inside the monitor's hooks: +{100 * out['overhead_hooks']:.1f} % of the rest of the same fit", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="N = d = n of the two-layer run")
    parser.add_argument("--steps", type=int, default=12, help="steps of the two-layer run")
    parser.add_argument("--mlp-steps", type=int, default=300, help="steps of the MLP run")
    parser.add_argument("--repeats", type=int, default=1, help="fits per side of the two-layer run (MLP: 3x this)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--only", choices=["two-layer", "mlp"], default=None)
    parser.add_argument("--previous-defaults", action="store_true", help="the monitor's cadences before issue 10")
    parser.add_argument("--load", type=int, default=0, metavar="K",
                        help="also fit beside K CPU-bound competitor processes; quiet and loaded side by side")
    parser.add_argument("--engine-threads", type=int, default=EngineConfig.threads,
                        help=f"the monitor's EngineConfig.threads (0: no bound; default {EngineConfig.threads})")
    args = parser.parse_args(argv)
    options: dict[str, Any] = dict(PREVIOUS_DEFAULTS) if args.previous_defaults else {}
    if args.engine_threads != EngineConfig.threads:
        options["engine"] = EngineConfig(threads=args.engine_threads or None)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for level in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(level).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    print(f"{'previous' if args.previous_defaults else 'current'} defaults; torch threads {torch.get_num_threads()}, "
          f"engine threads {args.engine_threads or None}, load average {load_average()}")
    if not args.load:
        results = _workloads(args, options)
        print(f"load average after: {load_average()}")
        return results
    print("quiet:")
    quiet = _workloads(args, options)
    load_quiet = load_average()
    print(f"beside {args.load} CPU-bound competitors:")
    with competing_load(args.load):
        loaded = _workloads(args, options)
        load_loaded = load_average()
    print(f"{'workload':>10} {'bare s quiet':>12} {'loaded':>7} {'monitored s quiet':>17} {'loaded':>7} "
          f"{'ratio quiet':>11} {'loaded':>7}")
    for name in quiet:
        q, lo = quiet[name], loaded[name]
        print(f"{name:>10} {q['wall_s_without']:>12.2f} {lo['wall_s_without']:>7.2f} {q['wall_s_with']:>17.2f} "
              f"{lo['wall_s_with']:>7.2f} {1 + q['overhead_wall']:>10.2f}x {1 + lo['overhead_wall']:>6.2f}x")
    print(f"load average after the quiet fits {load_quiet}, after the loaded fits {load_loaded} (wall times: the "
          "ratio is what a user waits for)")
    return {**quiet, **{f"{name} loaded": row for name, row in loaded.items()}}


def _workloads(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    size = args.size
    if args.only in (None, "two-layer"):
        results["two-layer"] = run_overhead(
            f"two-layer N = d = n = {size}", args.steps,
            lambda: (TwoLayerModule(width=size, input_dim=size),
                     GaussianDataModule(input_dim=size, batch_size=size, batches="independent")),
            lambda path: SpectrumMonitor(dirpath=path, **options), repeats=args.repeats)
    if args.only in (None, "mlp"):
        results["mlp"] = run_overhead(
            "mlp 64-256-10", args.mlp_steps, lambda: (DigitsLikeMLP(), None),
            lambda path: SpectrumMonitor(params=["net.0.weight", "net.2.weight"], dirpath=path, **options),
            repeats=3 * args.repeats)
    return results


if __name__ == "__main__":
    main()
