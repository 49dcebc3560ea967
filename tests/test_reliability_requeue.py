"""SLURM requeue at a step boundary (issue 11 row 3b): Lightning's handler of the requeue signal saved the HPC
checkpoint from inside the signal handler, at any bytecode of a step. A signal landing after the optimizer step but
before a callback had written its file for that step gave a checkpoint of step t whose file of step t was never
written (the job is killed soon after the requeue), and the resumed run starts at t + 1: a record line or snapshot
lost. TwoLayerModule now defers the handler to the end of the step, after every callback. Deterministic here: the
signal is sent from a callback in the middle of the hooks of step 3, and the process "dies" right after the HPC
checkpoint is on disk."""

from __future__ import annotations

import os
import signal
import stat

import lightning as L
import pytest
from lightning.pytorch.callbacks import Callback
from reliability_helpers import MONITOR_KWARGS, tiny_data, tiny_module, tiny_trainer

from spikelearn.callbacks import SpectrumMonitor, WeightSnapshot, load_snapshots, read_records

SIGNAL_AT = 3
STEPS = 5


class Killed(BaseException):
    """The job ending (SLURM kills it after the requeue): not an Exception, nothing may swallow it."""


class SignalDuringStep(Callback):
    """Send the requeue signal to this process during the on_train_batch_end hooks of one step."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == SIGNAL_AT:
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scontrol.log'}\nexit 0\n")
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for key, value in {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "requeue-test", "SLURM_NTASKS": "1",
                       "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1", "SLURM_NODELIST": "localhost",
                       "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(key, value)
    real_save = L.Trainer.save_checkpoint

    def save_then_die(self, filepath, *args, **kwargs):
        real_save(self, filepath, *args, **kwargs)
        if "hpc_ckpt" in str(filepath):
            raise Killed  # killed as soon as the HPC checkpoint exists, as the slow CLI test does
    monkeypatch.setattr(L.Trainer, "save_checkpoint", save_then_die)
    previous = signal.getsignal(signal.SIGUSR1)
    yield tmp_path
    signal.signal(signal.SIGUSR1, previous)


def _fit(root, callbacks):
    module = tiny_module(step_c=[1.0, 1.0, 0.5], step_alpha=[0.3, 0.45, 0.2])
    tiny_trainer(root, STEPS, precision="64-true", callbacks=callbacks).fit(module, tiny_data())


@pytest.mark.parametrize("with_record", [False, True], ids=["snapshots", "snapshots+record"])
def test_requeue_signal_mid_step_loses_no_file_of_that_step(slurm, with_record):
    root = slurm

    def callbacks():
        # the signal lands after the optimizer step of SIGNAL_AT, before these callbacks wrote their files for it
        out = [SignalDuringStep(), WeightSnapshot(dirpath=root / "snapshots", first_k=100)]
        if with_record:
            out.append(SpectrumMonitor(dirpath=root / "record", **MONITOR_KWARGS))
        return out

    with pytest.raises(Killed):
        _fit(root, callbacks())
    hpc = root / "hpc_ckpt_1.ckpt"
    assert hpc.exists()
    # the requeued job: same command, Lightning finds hpc_ckpt_1.ckpt in default_root_dir by itself
    _fit(root, [WeightSnapshot(dirpath=root / "snapshots", first_k=100)]
         + ([SpectrumMonitor(dirpath=root / "record", **MONITOR_KWARGS)] if with_record else []))
    assert [s.step for s in load_snapshots(root / "snapshots")] == list(range(STEPS + 1))
    if with_record:
        assert [r["step"] for r in read_records(root / "record" / "spectra.jsonl")] == list(range(STEPS + 1))
