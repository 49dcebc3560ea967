"""Errors a user can fix end in one line naming the file or field, not a traceback (issue 18, row 11): a full disk
while writing a checkpoint, ``--data.noise_std 1e308``, a checkpoint with a ``W`` of the wrong shape, non-finite
``W``, or garbage callback state."""

from __future__ import annotations

import errno
import os

import pytest
import torch
from reliability_helpers import fit_with_record, write_run_config

from spikelearn import _atomic
from spikelearn.checkpoint_io import AtomicCheckpointIO
from spikelearn.cli import main
from spikelearn.data import GaussianDataModule


def _last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


class _FullDisk:
    """A file handle that takes ``room`` bytes, then raises ENOSPC (the disk filled up mid-checkpoint)."""

    def __init__(self, handle, room: int) -> None:
        self._handle, self._room = handle, room

    def write(self, data):
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def test_a_full_disk_during_a_real_torch_save_is_an_oserror_naming_the_checkpoint(tmp_path, monkeypatch):
    real_fdopen = os.fdopen
    monkeypatch.setattr(_atomic.os, "fdopen", lambda fd, mode: _FullDisk(real_fdopen(fd, mode), 600))
    target = tmp_path / "last.ckpt"
    with pytest.raises(OSError, match=rf"cannot write the checkpoint {target} \(.* MiB free on its disk\): No space"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"W": torch.ones(64, 64)}}, target)
    assert not list(tmp_path.iterdir())


def test_a_full_disk_during_a_fit_checkpoint_ends_the_cli_in_one_line(tmp_path, monkeypatch, capsys):
    config = write_run_config(tmp_path / "run.yaml", tmp_path, max_steps=2)
    real_fdopen = os.fdopen

    def fdopen(fd, mode):
        handle = real_fdopen(fd, mode)
        return _FullDisk(handle, 600) if "checkpoints" in os.readlink(f"/proc/self/fd/{fd}") else handle

    monkeypatch.setattr(_atomic.os, "fdopen", fdopen)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config)])
    assert exit_info.value.code == 1
    line = _last_line(capsys)
    assert line.startswith("spikelearn: error: cannot write the checkpoint") and "No space left on device" in line


def test_a_huge_noise_std_is_refused_by_name():
    with pytest.raises(ValueError, match=r"`data.noise_std` must be a number in \[0, 1e\+06\], got 1e\+308"):
        GaussianDataModule(input_dim=8, noise_std=1e308)


def test_a_huge_noise_std_ends_the_cli_in_one_line(tmp_path, capsys):
    config = write_run_config(tmp_path / "run.yaml", tmp_path, max_steps=2)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--data.noise_std", "1e308"])
    assert "`data.noise_std` must be a number in [0, 1e+06]" in _last_line(capsys)


def _crafted(tmp_path, change) -> tuple:
    fit_with_record(tmp_path, 2)
    path = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    crafted = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, crafted)
    return crafted


def _snapshot_key(checkpoint) -> str:
    return next(k for k in checkpoint["callbacks"] if k.startswith("WeightSnapshot"))


@pytest.mark.parametrize("change, message", [
    (lambda c: c["state_dict"].__setitem__("W", torch.ones(3, 5, dtype=torch.float64)),
     r"crafted.ckpt: its `W` has shape \(3, 5\), but model.width x model.input_dim = 32 x 32 needs \(32, 32\)"),
    (lambda c: c["state_dict"]["W"].__setitem__((0, 0), float("nan")), r"crafted.ckpt: its `W` has non-finite"),
    (lambda c: c["callbacks"].__setitem__(_snapshot_key(c), "garbage"),
     r"crafted.ckpt: the callback state of WeightSnapshot.* is not a dict"),
    (lambda c: c["callbacks"][_snapshot_key(c)].__setitem__("dirpath", 5),
     r"WeightSnapshot: the checkpoint's callback state must be a dict with `dirpath`"),
], ids=["W-shape", "W-nan", "state-not-dict", "state-wrong-types"])
def test_a_crafted_checkpoint_is_refused_by_name(tmp_path, change, message):
    crafted = _crafted(tmp_path, change)
    with pytest.raises(ValueError, match=message):
        fit_with_record(tmp_path, 3, ckpt_path=crafted)
