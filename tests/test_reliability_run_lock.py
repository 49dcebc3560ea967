"""One writer per run directory (issue 11 row 1): `spikelearn fit` locks the directories it writes into; a second
run aimed at them is refused naming the holder; the lock goes with the process, also after kill -9."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import yaml
from reliability_helpers import SLEEP_ENV, cli_command, cli_env, record_steps, write_run_config

from spikelearn.callbacks import read_records
from spikelearn.cli import build_cli
from spikelearn.run_lock import LOCK_FILENAME, RunDirectoryLock, RunDirectoryLockedError


def test_second_lock_of_a_directory_is_refused_with_the_holder(tmp_path):
    with RunDirectoryLock(tmp_path):
        with pytest.raises(RunDirectoryLockedError, match=rf"Run directory {tmp_path} is in use by another spikelearn "
                                                          rf"run \(pid \d+ on "):
            RunDirectoryLock(tmp_path).acquire()
    RunDirectoryLock(tmp_path).acquire().release()  # released on exit of the first


def test_lock_of_a_killed_process_is_free_again(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from spikelearn.run_lock import "
                               f"RunDirectoryLock; RunDirectoryLock({str(tmp_path)!r}).acquire(); print('held', "
                               "flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryLockedError, match=rf"pid {holder.pid} "):
            RunDirectoryLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (tmp_path / LOCK_FILENAME).exists()  # the stale file stays, and is no lock by itself
    RunDirectoryLock(tmp_path).acquire().release()


def _config(root):
    config = {
        "trainer": {"max_steps": 1, "accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                    "default_root_dir": str(root / "root"),
                    "callbacks": [{"class_path": "spikelearn.callbacks.WeightSnapshot",
                                   "init_args": {"dirpath": str(root / "snapshots")}}]},
        "model": {"width": 16}, "data": {"input_dim": 16, "batch_size": 16, "test_size": 4, "readout_size": 4},
    }
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    return root / "run.yaml"


@pytest.mark.parametrize("locked", ["snapshots", "root"])
def test_cli_refuses_a_run_directory_in_use_before_writing(tmp_path, locked):
    config = _config(tmp_path)
    with RunDirectoryLock(tmp_path / locked):
        with pytest.raises(RunDirectoryLockedError, match=rf"{tmp_path / locked} is in use by another spikelearn run"):
            build_cli(["fit", "--config", str(config)])
    assert not list(tmp_path.rglob("*.safetensors")) and not list(tmp_path.rglob("*.ckpt"))
    build_cli(["fit", "--config", str(config)])  # free again: the run goes through and lets go of its locks
    RunDirectoryLock(tmp_path / "snapshots").acquire().release()


def test_cli_runs_under_one_save_dir_with_versions_do_not_block_each_other(tmp_path):
    # a logger's save_dir is shared by its versions (and by sweep jobs): only the version directory is locked
    config = _config(tmp_path)
    logger = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(tmp_path / "logs"),
              "--trainer.callbacks", "[]"]
    with RunDirectoryLock(tmp_path / "logs"):
        cli = build_cli(["fit", "--config", str(config), *logger])
    assert cli.trainer.global_step == 1


@pytest.mark.slow
def test_the_same_config_twice_into_one_directory(tmp_path):
    """The issue's reproduction: the second `spikelearn fit` of one config, 3 s after the first, is refused."""
    config = write_run_config(tmp_path / "run.yaml", tmp_path, max_steps=6, checkpoint_every=None)
    env = {**cli_env(), SLEEP_ENV: "1.0"}
    first = subprocess.Popen(cli_command(config), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    second = subprocess.run(cli_command(config), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    _, first_err = first.communicate(timeout=240)
    assert first.returncode == 0, first_err[-3000:]
    assert second.returncode != 0
    assert "is in use by another spikelearn run" in second.stderr.strip().splitlines()[-1]
    assert record_steps(read_records(tmp_path / "record" / "spectra.jsonl")) == list(range(7))
