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


def _help(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_cli(args)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_help_speaks_spikelearn_and_lists_the_packaged_configs(capsys):
    for args in (["--help"], ["fit", "--help"]):
        text = " ".join(_help(args, capsys).split())  # argparse wraps lines
        assert "Lightning Trainer command line tool" not in text
        assert "singular values of W" in text
        assert all(name in text for name in CONFIG_NAMES), args


def test_fit_help_lists_allowed_values_in_plain_words_and_no_optimizer(capsys):
    text = " ".join(_help(["fit", "--help"], capsys).split())
    assert ":func:" not in text and ":data:" not in text and ":class:" not in text
    assert "one of: independent, reused, resample_every" in text  # data.batches
    assert "one of: shifted_tanh, tanh, relu, erf, shifted_erf" in text  # model.activation
    assert "one of: gaussian, sphere" in text and "one of: gaussian, rademacher, constant" in text  # init kinds
    assert "he1, he2" in text and "staircase" in text  # targets
    assert "--optimizer" not in text and "--lr_scheduler" not in text


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_only_fit_is_a_subcommand(subcommand, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_cli([subcommand, "--config", "two_step_reused"])
    assert exit_info.value.code != 0
    assert "fit" in capsys.readouterr().err


def test_config_accepted_by_name(capsys):
    with pytest.raises(SystemExit):
        build_cli(["fit", "--config", "many_steps", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["trainer"]["max_steps"] == 50


def test_default_root_dir_holds_every_output_and_the_fit_prints_its_result(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "elsewhere"
    cli = build_cli(["fit", "--config", "two_step_reused", *SMALL, "--model.width", "96", "--data.input_dim", "96",
                     "--data.batch_size", "96", "--trainer.default_root_dir", str(root)])
    assert not (tmp_path / "runs").exists()
    run_dir = root / "spikelearn" / "version_0"
    assert (run_dir / "spectra.jsonl").is_file() and (run_dir / "config.yaml").is_file()
    assert list((run_dir / "checkpoints").glob("*.ckpt")) and list(run_dir.glob("events.out.tfevents.*"))
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert hparams["model.seed"] == 0 and hparams["data.seed"] == 0
    out = capsys.readouterr().out
    assert "outliers tot/defl" in out and f"run directory: {run_dir}" in out
    assert cli.trainer.progress_bar_callback.__class__.__name__ == "StepProgressBar"


def test_a_logger_save_dir_wins_over_default_root_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build_cli(["fit", "--config", "two_step_reused", *SMALL, "--trainer.max_steps", "1",
               "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "root"),
               "--trainer.logger.init_args.save_dir", str(tmp_path / "logs")])
    assert (tmp_path / "logs" / "spikelearn" / "version_0" / "spectra.jsonl").is_file()


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
