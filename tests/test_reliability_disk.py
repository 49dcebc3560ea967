"""Disk: a read-only, misplaced or full output directory is a clear error before training starts; a disk that
fills up mid-run stops the run with the record and snapshots written so far intact, and the run resumes."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections import namedtuple

import pytest
from reliability_helpers import fit_with_record, record_steps

from spikelearn.callbacks import _io, load_snapshots, read_records
from spikelearn.cli import OutputDirectoryError, build_cli, check_output_dir, config_path

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _fit_args(root, *extra):
    return ["fit", "--config", str(config_path("two_step_reused")), "--model.width", "16", "--data.input_dim", "16",
            "--data.batch_size", "16", "--trainer.enable_progress_bar", "false",
            "--trainer.logger.init_args.save_dir", str(root / "runs"), "--trainer.default_root_dir", str(root), *extra]


def _assert_not_started(root):
    assert not list(root.rglob("*.ckpt")), "training started before the output directory was checked"


def test_output_dir_under_a_file_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OutputDirectoryError, match=r"cannot be created: .*a_file is a file, not a directory"):
        build_cli(_fit_args(tmp_path, "--trainer.logger.init_args.save_dir", str(tmp_path / "a_file" / "runs")))
    _assert_not_started(tmp_path)


def test_read_only_output_dir_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    if IS_ROOT:
        # root writes through chmod 0o500: make the permission check see what an ordinary user would
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(read_only) and mode & os.W_OK
                            else real_access(p, mode, **kw))
    else:
        read_only.chmod(0o500)
    try:
        with pytest.raises(OutputDirectoryError, match=r"read_only/runs is not writable: .*read_only does not grant"):
            build_cli(_fit_args(tmp_path, "--trainer.logger.init_args.save_dir", str(read_only / "runs")))
    finally:
        read_only.chmod(0o700)
    _assert_not_started(tmp_path)


def test_unwritable_directory_found_by_the_probe_write(tmp_path, monkeypatch):
    # e.g. a read-only mount, where os.access may still say yes: the probe file fails and is reported
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(OutputDirectoryError, match="is not writable: Read-only file system"):
        check_output_dir(tmp_path / "out", min_free_mb=0)


@pytest.mark.parametrize("where", ["default_root_dir", "logger", "callback"])
def test_full_disk_is_refused_before_training(tmp_path, monkeypatch, where):
    monkeypatch.chdir(tmp_path)
    full = tmp_path / "full"
    real = shutil.disk_usage
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: usage(10**12, 10**12, 0) if str(p).startswith(str(full)) else real(p))
    extra = {
        "default_root_dir": ["--trainer.default_root_dir", str(full)],
        "logger": ["--trainer.logger.init_args.save_dir", str(full / "runs")],
        "callback": ["--trainer.callbacks+=" + json.dumps({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                                           "init_args": {"dirpath": str(full / "ckpts")}})],
    }[where]
    with pytest.raises(OutputDirectoryError, match=r"full.* has 0.0 MiB free, less than `min_free_mb` = 100 MiB"):
        build_cli([*_fit_args(tmp_path), *extra])
    _assert_not_started(tmp_path)
    # the threshold is the user's: --min_free_mb 0 accepts the same directory
    cli = build_cli([*_fit_args(tmp_path), *extra, "--min_free_mb", "0", "--trainer.max_steps", "1"])
    assert cli.trainer.global_step == 1


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_min_free_mb_is_validated(tmp_path, bad):
    with pytest.raises(ValueError, match="`min_free_mb` must be a finite number >= 0"):
        check_output_dir(tmp_path, min_free_mb=bad)


def test_disk_full_mid_run_keeps_what_was_written_and_resumes(tmp_path, monkeypatch):
    """ENOSPC while appending the record line of step 3: the run stops with the OS error, every line and
    snapshot before it is intact, and resuming from the checkpoint of step 2 completes the record."""
    real_write = os.write

    def full_write(fd, data):
        if bytes(data).startswith(b'{"step":3,'):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(_io.os, "write", full_write)
    with pytest.raises(OSError, match="No space left on device"):
        fit_with_record(tmp_path, 5)
    monkeypatch.undo()
    assert record_steps(read_records(tmp_path / "record" / "spectra.jsonl")) == [0, 1, 2]
    assert [s.step for s in load_snapshots(tmp_path / "snapshots")][:3] == [0, 1, 2]
    fit_with_record(tmp_path, 5, ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    assert record_steps(read_records(tmp_path / "record" / "spectra.jsonl")) == list(range(6))
    assert [s.step for s in load_snapshots(tmp_path / "snapshots")] == list(range(6))
