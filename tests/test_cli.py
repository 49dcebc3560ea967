"""`spikelearn fit` end to end: packaged configs, --print_config, and DDP on 2 CPU processes (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from spikelearn.cli import CONFIG_NAMES, build_cli, config_path

SMALL = ["--model.width", "64", "--data.input_dim", "64", "--data.batch_size", "64", "--data.test_size", "64",
         "--data.readout_size", "64"]


def _final_weights(root: Path) -> torch.Tensor:
    checkpoints = sorted(root.rglob("*.ckpt"))
    assert checkpoints, f"no checkpoint under {root}"
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)
    return state["state_dict"]["W"]


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_packaged_config_runs_end_to_end(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    cli = build_cli(["fit", "--config", str(config_path(name)), *SMALL, "--trainer.max_steps", "3",
                     "--trainer.enable_progress_bar", "false"])
    assert cli.trainer.global_step == 3
    assert (tmp_path / "runs").is_dir()
    assert torch.isfinite(_final_weights(tmp_path / "runs")).all()


def test_print_config_shows_resolved_settings(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_cli(["fit", "--config", str(config_path("two_step_reused")), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["batches"] == "reused"
    assert printed["model"]["step_alpha"] == [0.35, 0.4]


def test_unknown_config_name():
    with pytest.raises(ValueError, match="two_step_reused"):
        config_path("three_steps")


def _run_cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    tmp_path.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "spikelearn.cli", "fit", "--config", str(config_path("two_step_reused")), *SMALL,
               "--trainer.enable_progress_bar", "false", "--trainer.precision", "64-true",
               "--trainer.logger.init_args.save_dir", str(tmp_path), *extra]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process(tmp_path):
    _run_cli(tmp_path / "one", "--trainer.devices", "1")
    _run_cli(tmp_path / "two", "--trainer.devices", "2", "--trainer.strategy", "ddp")
    W_one, W_two = _final_weights(tmp_path / "one"), _final_weights(tmp_path / "two")
    # the DDP gradient is the average of two half-batch gradients = the full-batch gradient up to float64 rounding
    assert float((W_two - W_one).norm() / W_one.norm()) <= 1e-6


@pytest.mark.slow
def test_odd_batch_on_two_processes_is_a_clear_error(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "spikelearn.cli", "fit", "--config", str(config_path("two_step_reused")), *SMALL,
               "--data.batch_size", "63", "--trainer.devices", "2", "--trainer.strategy", "ddp",
               "--trainer.logger.init_args.save_dir", str(tmp_path)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "divisible by the world size" in result.stderr
