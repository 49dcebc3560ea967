"""Every stop is visible and every run resumable (issue 18, rows 4, 5, 14): SIGTERM exits 143 saying how to resume;
the packaged configs keep a periodic ``last.ckpt`` so a killed run resumes with ``--ckpt_path last``, which is an
error when there is nothing to resume; a run of 0 steps, an unknown ``--config`` and a directory named like a
packaged config are said in one line."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from reliability_helpers import SLEEP_ENV, checkpoint_step, cli_env, wait_for, write_run_config

from spikelearn.callbacks import read_records
from spikelearn.cli import SIGTERM_EXIT_CODE, build_cli, config_path, main, resolve_config_names

TINY = ["--model.width", "32", "--data.input_dim", "32", "--data.batch_size", "64", "--data.test_size", "16",
        "--data.readout_size", "16"]


def _fit(*args: str) -> list[str]:
    return [sys.executable, "-m", "spikelearn.cli", "fit", *args]


# ---------------------------------------------------------------------------------------------- row 4: SIGTERM
@pytest.mark.slow
def test_a_fit_stopped_by_sigterm_exits_143_and_says_how_to_resume(tmp_path):
    config = write_run_config(tmp_path / "run.yaml", tmp_path, max_steps=40)
    last = tmp_path / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(_fit("--config", str(config)), cwd=tmp_path, env={**cli_env(), SLEEP_ENV: "0.3"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: last.exists(), process, what="the first last.ckpt")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == SIGTERM_EXIT_CODE == 143
    line = err.strip().splitlines()[-1]
    assert line.startswith("spikelearn: error: stopped by SIGTERM after step ") and "of 40" in line
    assert f"--ckpt_path {last}" in line


# ---------------------------------------------------------------------------------------------- row 5: last.ckpt
def test_the_cli_keeps_a_periodic_last_checkpoint_by_default(tmp_path):
    cli = build_cli(["--config", "many_steps", *TINY, "--trainer.default_root_dir", str(tmp_path)], run=False)
    saving = [c for c in cli.trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
    assert len(saving) == 1 and saving[0].save_last is True and saving[0]._every_n_train_steps == 1


def test_ckpt_path_last_with_nothing_to_resume_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"`--ckpt_path last`: no last.ckpt to resume"):
        build_cli(["fit", "--config", "many_steps", *TINY, "--trainer.default_root_dir", str(tmp_path),
                   "--ckpt_path", "last"])
    assert not list(tmp_path.rglob("spectra.jsonl")), "it trained from step 0"


@pytest.mark.slow
def test_a_packaged_config_killed_mid_run_resumes_with_ckpt_path_last(tmp_path):
    args = ["--config", "many_steps", *TINY, "--trainer.max_steps", "12", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.callbacks+=reliability_helpers.SlowDown"]
    version_0 = tmp_path / "spikelearn" / "version_0"
    last = version_0 / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(_fit(*args), cwd=tmp_path, env={**cli_env(), SLEEP_ENV: "0.4"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: last.exists() and checkpoint_step(last) >= 3, process, what="a last.ckpt of step 3")
    process.kill()  # kill -9: nothing runs after it
    process.communicate(timeout=60)
    killed_at = checkpoint_step(last)
    assert killed_at < 12
    result = subprocess.run(_fit(*args, "--ckpt_path", "last"), cwd=tmp_path, env={**cli_env(), SLEEP_ENV: "0"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"--ckpt_path last resumes {last}" in result.stderr
    records = read_records(tmp_path / "spikelearn" / "version_1" / "spectra.jsonl")
    assert [r["step"] for r in records] == list(range(13)), "the resumed record does not continue the run"
    assert checkpoint_step(tmp_path / "spikelearn" / "version_1" / "checkpoints" / "last.ckpt") == 12


# ---------------------------------------------------------------------------------------------- row 14: smaller
def test_max_steps_0_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"`trainer.max_steps` must be >= 1 \(or -1 for no limit\), got 0"):
        build_cli(["fit", "--config", "many_steps", *TINY, "--trainer.default_root_dir", str(tmp_path),
                   "--trainer.max_steps", "0"])
    assert not list(tmp_path.rglob("spectra.jsonl"))


def test_an_unknown_config_name_lists_the_packaged_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "nosuch"])
    assert exit_info.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'nosuch' is neither a file" in last and "two_step_independent, two_step_reused, many_steps" in last


def test_a_directory_named_like_a_packaged_config_does_not_hide_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "two_step_reused").mkdir()
    resolved = resolve_config_names(["fit", "--config", "two_step_reused"])
    assert Path(resolved[2]) == config_path("two_step_reused")
    assert "write --config ./two_step_reused" in capsys.readouterr().err
    assert resolve_config_names(["fit", "--config", "./two_step_reused"])[2] == "./two_step_reused"
