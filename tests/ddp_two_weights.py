"""A tiny float64 MLP with two watched 64 x 64 weights, trained by one process or by two gloo DDP processes.

Launched by tests/test_spectrum_ddp.py (never imported by pytest: a DDP child process re-runs its parent's command,
which must be this script). Full-batch GD on 64 fixed random samples, one batch per epoch: under DDP each rank takes
half the batch (Lightning's DistributedSampler, no shuffle), so the averaged gradient is the 1-process gradient to
rounding. Writes, in the working directory (relative paths, so the monitor's checkpoint key, which holds its
``dirpath``, is the same in a copy of the run directory): ``record/spectra.jsonl`` and ``record/figures/``, the
TensorBoard events in ``tb/``, ``checkpoints/last.ckpt``, ``trackers_rank<r>.json`` from each rank (the trackers
it holds) and, from rank zero, ``history.json`` (the monitor's ``history``).

    cd RUN_DIR && python .../tests/ddp_two_weights.py --devices 2 --steps 3 [--ckpt-path CKPT] [--poison-step T]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from spikelearn.callbacks import Cadence, SpectrumMonitor
from spikelearn.functional.inputs import EngineConfig

WIDTH = 64  # N = d = 64: both watched weights are (64, 64)
SAMPLES = 64  # the global batch (one batch per epoch)
WATCHED = ("net.0.weight", "net.2.weight")  # weight 0 on rank 0, weight 1 on rank 1


class MLP(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        # float64 from the start, so a checkpoint's float64 weights load exactly (no float32 parameter in between)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(WIDTH, WIDTH), torch.nn.Tanh(), torch.nn.Linear(WIDTH, WIDTH), torch.nn.Tanh(),
            torch.nn.Linear(WIDTH, 1),
        ).double()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        X, y = batch  # (n, WIDTH), (n,)
        return torch.nn.functional.mse_loss(self.net(X).squeeze(-1), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


class PoisonAt(Callback):
    """Make the second watched weight non-finite after step ``step`` (on every rank, like a real divergence)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.get_parameter(WATCHED[1])[0, 0] = float("nan")


class TrackerProbe(Callback):
    """Write which trackers this rank holds (name: last analysed step) after the monitor's ``on_train_start`` (so
    after a resume loaded them) and at the end, to ``trackers_rank<r>.json``."""

    def __init__(self, monitor: SpectrumMonitor) -> None:
        self.monitor, self.start = monitor, {}

    def _held(self) -> dict[str, int]:
        return {name: tracker.last_step for name, tracker in self.monitor._trackers.items()}

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = self._held()

    def on_train_end(self, trainer, pl_module) -> None:
        Path(f"trackers_rank{trainer.global_rank}.json").write_text(json.dumps({"start": self.start, "end": self._held()}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--ckpt-path", type=Path, default=None)
    parser.add_argument("--poison-step", type=int, default=None)
    args = parser.parse_args(argv)

    L.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(SAMPLES, WIDTH, generator=g, dtype=torch.float64)  # (n, d)
    y = torch.tanh(X[:, 0] + X[:, 1] * X[:, 2])  # (n,)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=SAMPLES // args.devices)
    monitor = SpectrumMonitor(
        params=list(WATCHED), dirpath="record", engine=EngineConfig(k=8, max_order=2),
        histograms=Cadence(every_n_steps=1), figures=Cadence(first_k=0, every_n_steps=2),
    )
    callbacks: list[Callback] = [monitor, TrackerProbe(monitor), ModelCheckpoint(dirpath="checkpoints", save_last=True)]
    if args.poison_step is not None:
        callbacks.insert(0, PoisonAt(args.poison_step))
    trainer = L.Trainer(
        accelerator="cpu", devices=args.devices, strategy="ddp" if args.devices > 1 else "auto",
        max_steps=args.steps, max_epochs=-1, precision="64-true", callbacks=callbacks,
        logger=TensorBoardLogger(".", name="tb", version=0), enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(MLP(), loader, ckpt_path=args.ckpt_path)
    if trainer.is_global_zero:
        Path("history.json").write_text(json.dumps(monitor.history))


if __name__ == "__main__":
    main()
