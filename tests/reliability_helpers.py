"""Shared pieces of the reliability suite (tests/test_reliability_*.py): tiny runs, CLI subprocesses, faults.

Also imported by the CLI subprocesses of the kill/resume tests (``tests/`` is put on their ``PYTHONPATH``), so the
callbacks here can be named by ``class_path`` in a YAML config.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from spikelearn.data import GaussianDataModule
from spikelearn.module import TwoLayerModule

TESTS_DIR = Path(__file__).resolve().parent
SIZE = 32

MONITOR_KWARGS: dict[str, Any] = {
    "engine": {"k": 8, "max_order": 2}, "analyses": {"every_n_steps": 1}, "histograms": False, "save_figures": False,
}
"""A SpectrumMonitor that analyses every step cheaply (no histogram, no figure)."""


def tiny_module(**kwargs: Any) -> TwoLayerModule:
    return TwoLayerModule(**{"width": SIZE, "input_dim": SIZE, "step_c": [1.0, 1.0], "step_alpha": [0.3, 0.45], **kwargs})


def tiny_data(**kwargs: Any) -> GaussianDataModule:
    return GaussianDataModule(**{"input_dim": SIZE, "batch_size": 64, "seed": 1, "test_size": 16, "readout_size": 16,
                                 **kwargs})


def tiny_trainer(root: Path, max_steps: int, **kwargs: Any) -> L.Trainer:
    options = {"logger": False, "enable_checkpointing": False, **kwargs}
    return L.Trainer(
        max_steps=max_steps, max_epochs=-1, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, accelerator="cpu", devices=1, default_root_dir=root, **options,
    )


def fit_with_record(root: Path, max_steps: int, ckpt_path: Path | None = None) -> None:
    """Fit the tiny float64 model with a record in ``root/record``, snapshots of every step in ``root/snapshots``
    and a checkpoint per step in ``root/checkpoints`` (``last.ckpt`` included): the full state a crash can damage."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from spikelearn.callbacks import SpectrumMonitor, WeightSnapshot

    callbacks = [SpectrumMonitor(dirpath=root / "record", **MONITOR_KWARGS),
                 WeightSnapshot(dirpath=root / "snapshots", first_k=100),
                 ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=1, save_last=True)]
    tiny_trainer(root, max_steps, precision="64-true", callbacks=callbacks,
                 enable_checkpointing=True).fit(tiny_module(), tiny_data(), ckpt_path=ckpt_path)


def record_steps(records: list[dict[str, Any]]) -> list[int]:
    return [r["step"] for r in records]


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its wall-clock field."""
    return {k: v for k, v in record.items() if k != "analysis_seconds"}


# ------------------------------------------------------------------------------------------------ faults
SLEEP_ENV = "SPIKELEARN_TEST_SLEEP"


class SlowDown(Callback):
    """Sleep ``$SPIKELEARN_TEST_SLEEP`` seconds after every step, so a subprocess run can be killed mid-run.

    The duration comes from the environment, so the interrupted run and its resumption share one config.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(float(os.environ.get(SLEEP_ENV, "0")))


class CorruptBatchAt(Callback):
    """Fault injection: make the labels of step ``step`` non-finite (a NaN loss at exactly that step)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch.step == self.step:
            batch.y.fill_(float("nan"))


class CorruptGradientAt(Callback):
    """Fault injection: a NaN in the gradient of step ``step`` (finite loss, non-finite ``W`` after the update)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step + 1 == self.step:
            pl_module.W.grad[0, 0] = float("nan")


class Evil:
    """Unpickling this writes ``marker``: the payload of a checkpoint or snapshot crafted to execute code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


# ------------------------------------------------------------------------------------------------ CLI runs
def cli_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**env, "PYTHONWARNINGS": "ignore", "PYTHONPATH": path, **extra}


def cli_command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "spikelearn.cli", "fit", "--config", str(config), *extra]


def run_cli(config: Path, *extra: str, cwd: Path, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cli_command(config, *extra), cwd=cwd, env=env or cli_env(), capture_output=True, text=True,
                            timeout=240)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def write_run_config(path: Path, root: Path, *, max_steps: int, checkpoint_every: int | None = 1,
                     logger: bool = False, explicit_dirs: bool = True, **model: Any) -> Path:
    """A tiny float64 run writing snapshots of every step, a record line per step and (optionally) checkpoints."""
    snapshot_dir = {"dirpath": str(root / "snapshots")} if explicit_dirs else {}
    record_dir = {"dirpath": str(root / "record")} if explicit_dirs else {}
    callbacks: list[dict[str, Any]] = [
        {"class_path": "spikelearn.callbacks.WeightSnapshot", "init_args": {**snapshot_dir, "first_k": 10**6}},
        {"class_path": "spikelearn.callbacks.SpectrumMonitor", "init_args": {**record_dir, **MONITOR_KWARGS}},
    ]
    if checkpoint_every is not None:
        callbacks.append({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                          "init_args": {"dirpath": str(root / "checkpoints"),
                                        "every_n_train_steps": checkpoint_every, "save_last": True}})
    callbacks.append({"class_path": "reliability_helpers.SlowDown"})
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_steps": max_steps, "accelerator": "cpu", "devices": 1, "precision": "64-true",
            "enable_progress_bar": False, "default_root_dir": str(root),
            "logger": ({"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                        "init_args": {"save_dir": str(root / "tb"), "name": "run"}} if logger else False),
            "callbacks": callbacks,
        },
        "model": {"width": SIZE, "step_c": [1.0, 1.0, 0.5], "step_alpha": [0.3, 0.45, 0.2], "seed": 0, **model},
        "data": {"input_dim": SIZE, "batch_size": 64, "batches": "independent", "target": "he1", "seed": 0,
                 "test_size": 16, "readout_size": 16},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def wait_for(predicate, process: subprocess.Popen, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (rc {process.returncode}) before {what}: "
                                 f"{process.stderr.read()[-3000:] if process.stderr else ''}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
