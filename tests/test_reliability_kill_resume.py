"""Kill and resume through the CLI: SIGTERM, and SIGUSR1 under an emulated SLURM job (Lightning's auto-requeue),
in the middle of a run; the resumed run ends with exactly the W of an uninterrupted one, and its snapshots and
``spectra.jsonl`` hold every step once."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from reliability_helpers import (
    MONITOR_KWARGS,
    SLEEP_ENV,
    checkpoint_step,
    cli_command,
    cli_env,
    comparable,
    record_steps,
    run_cli,
    tiny_data,
    tiny_module,
    tiny_trainer,
    wait_for,
    write_run_config,
)

from spikelearn.callbacks import SpectrumMonitor, WeightSnapshot, load_snapshots, read_records

STEPS = 16
KILL_AFTER = 4  # kill once a checkpoint of at least this step exists
SLEEP = "0.3"  # seconds per step in the interrupted run: the signal lands between steps, never mid-update


@pytest.mark.parametrize("precision", ["32-true", "64-true"])
def test_resume_from_a_mid_run_checkpoint_is_bit_exact(tmp_path, precision):
    """In-process: 8 steps == 4 steps (ModelCheckpoint after every step) + resume from last.ckpt + 4 steps.

    Found by this suite: under 64-true Lightning restored W into the still-float32 module before converting it,
    so resumed float64 runs drifted by ~3e-8 (fixed in TwoLayerModule.on_load_checkpoint).
    """
    def fit(root, max_steps, ckpt_path=None):
        module = tiny_module(step_c=[1.0, 1.0, 0.5], step_alpha=[0.3, 0.45, 0.2])
        callbacks = [WeightSnapshot(dirpath=root / "snapshots", first_k=100),
                     SpectrumMonitor(dirpath=root / "record", **MONITOR_KWARGS),
                     ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=1, save_last=True)]
        tiny_trainer(root, max_steps, precision=precision, callbacks=callbacks,
                     enable_checkpointing=True).fit(module, tiny_data(), ckpt_path=ckpt_path)
        return module

    straight = fit(tmp_path / "straight", 8)
    fit(tmp_path / "split", 4)
    resumed = fit(tmp_path / "split", 8, ckpt_path=tmp_path / "split" / "checkpoints" / "last.ckpt")
    assert resumed.W.dtype == straight.W.dtype
    assert float((resumed.W.detach() - straight.W.detach()).abs().max()) == 0.0
    assert [s.step for s in load_snapshots(tmp_path / "split" / "snapshots")] == list(range(9))
    assert record_steps(read_records(tmp_path / "split" / "record" / "spectra.jsonl")) == list(range(9))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the same config."""
    root = tmp_path_factory.mktemp("reference")
    run_cli(write_run_config(root / "run.yaml", root, max_steps=STEPS), cwd=root)
    return root


def _start(config: Path, root: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen(cli_command(config, *extra), cwd=root, env={**env, SLEEP_ENV: SLEEP},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _last_checkpoint_at_least(path: Path, step: int):
    def ready() -> bool:
        try:
            return path.exists() and checkpoint_step(path) >= step
        except Exception:  # being replaced right now; look again
            return False
    return ready


def _assert_same_run(root: Path, reference: Path, snapshot_dir: Path | None = None,
                     record: Path | None = None) -> None:
    snapshots = load_snapshots(snapshot_dir or root / "snapshots")
    expected = load_snapshots(reference / "snapshots")
    assert [s.step for s in snapshots] == list(range(STEPS + 1)), "a snapshot is missing or doubled"
    for got, want in zip(snapshots, expected):
        assert float((got.weights["W"] - want.weights["W"]).abs().max()) == 0.0, f"W_{got.step} differs"
    records = read_records(record or root / "record" / "spectra.jsonl")
    expected_records = read_records(reference / "record" / "spectra.jsonl")
    assert record_steps(records) == list(range(STEPS + 1)), "a record line is missing or doubled"
    for got, want in zip(records, expected_records):
        # the top-k solver is warm-started from the previous step, which a resumed monitor lacks: 1e-9 relative
        assert got["singular_values"] == pytest.approx(want["singular_values"], rel=1e-9)
        assert got["outliers"] == want["outliers"] and got["eta"] == want["eta"]
    final = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["global_step"] == STEPS
    assert torch.equal(final["state_dict"]["W"], expected[-1].weights["W"])


@pytest.mark.slow
def test_sigterm_mid_run_then_resume_equals_uninterrupted(tmp_path, reference):
    config = write_run_config(tmp_path / "run.yaml", tmp_path, max_steps=STEPS)
    last = tmp_path / "checkpoints" / "last.ckpt"
    process = _start(config, tmp_path, cli_env())
    wait_for(_last_checkpoint_at_least(last, KILL_AFTER), process, what=f"a checkpoint of step {KILL_AFTER}")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    killed_at = checkpoint_step(last)
    assert KILL_AFTER <= killed_at < STEPS, "the run was not interrupted in the middle"
    # the record of the interrupted run is readable (complete lines only) and reaches the checkpoint
    assert record_steps(read_records(tmp_path / "record" / "spectra.jsonl"))[: killed_at + 1] == list(
        range(killed_at + 1))

    run_cli(config, "--ckpt_path", str(last), cwd=tmp_path)
    _assert_same_run(tmp_path, reference)


@pytest.mark.slow
def test_sigterm_then_resume_with_default_versioned_log_dirs(tmp_path, reference):
    """No dirpath given: snapshots and record live in the logger's version_0; the resumed run logs to version_1 and
    writes only there (it holds that directory's lock): the earlier snapshots are linked and the record carried over
    into version_1, and version_0 keeps what the interrupted run left (issue 18, row 2)."""
    config = write_run_config(tmp_path / "run.yaml", tmp_path, max_steps=STEPS, logger=True, explicit_dirs=False)
    last = tmp_path / "checkpoints" / "last.ckpt"
    process = _start(config, tmp_path, cli_env())
    wait_for(_last_checkpoint_at_least(last, KILL_AFTER), process, what=f"a checkpoint of step {KILL_AFTER}")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert KILL_AFTER <= checkpoint_step(last) < STEPS
    versions = tmp_path / "tb" / "run"
    left = sorted(p.name for p in (versions / "version_0" / "snapshots").iterdir())
    run_cli(config, "--ckpt_path", str(last), cwd=tmp_path)
    assert sorted(p.name for p in versions.iterdir()) == ["version_0", "version_1"]
    assert sorted(p.name for p in (versions / "version_0" / "snapshots").iterdir()) == left
    _assert_same_run(tmp_path, reference, snapshot_dir=versions / "version_1" / "snapshots",
                     record=versions / "version_1" / "spectra.jsonl")


def _fake_scontrol(bin_dir: Path, log: Path) -> None:
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\nexit 0\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.mark.slow
def test_slurm_sigusr1_requeue_then_resume_equals_uninterrupted(tmp_path, reference):
    requeue_log = tmp_path / "scontrol.log"
    _fake_scontrol(tmp_path / "bin", requeue_log)
    env = cli_env(
        PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        SLURM_JOB_ID="4242", SLURM_JOB_NAME="spikelearn-reliability", SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1",
        SLURM_NNODES="1", SLURM_NODELIST="localhost", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0",
    )
    config = write_run_config(tmp_path / "run.yaml", tmp_path, max_steps=STEPS)
    process = _start(config, tmp_path, env)
    wait_for(_last_checkpoint_at_least(tmp_path / "checkpoints" / "last.ckpt", KILL_AFTER), process,
             what=f"a checkpoint of step {KILL_AFTER}")
    process.send_signal(signal.SIGUSR1)  # SLURM's warning signal before the time limit
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    wait_for(lambda: requeue_log.exists() and hpc.exists(), process, what="the HPC checkpoint and the requeue")
    process.kill()  # SLURM ends the job after requeueing it
    process.communicate(timeout=60)
    assert requeue_log.read_text().split() == ["requeue", "4242"]
    requeued_at = checkpoint_step(hpc)
    assert KILL_AFTER <= requeued_at < STEPS

    # the requeued job runs the same command; Lightning finds hpc_ckpt_1.ckpt in default_root_dir by itself
    result = run_cli(config, cwd=tmp_path, env=env)
    assert "hpc_ckpt_1.ckpt" in result.stderr + result.stdout
    _assert_same_run(tmp_path, reference)


@pytest.mark.slow
def test_determinism_of_the_cli_run(tmp_path, reference):
    """Same config and seed, second CLI process: bit-identical W_T, snapshots and records (wall time aside)."""
    run_cli(write_run_config(tmp_path / "run.yaml", tmp_path, max_steps=STEPS), cwd=tmp_path)
    for got, want in zip(load_snapshots(tmp_path / "snapshots"), load_snapshots(reference / "snapshots"), strict=True):
        assert got.step == want.step
        assert torch.equal(got.weights["W"], want.weights["W"]), (
            f"W_{got.step} differs by {float((got.weights['W'] - want.weights['W']).abs().max())}")
    records, expected = (read_records(r / "record" / "spectra.jsonl") for r in (tmp_path, reference))
    for got, want in zip(records, expected, strict=True):
        differing = sorted(k for k in comparable(got) if got[k] != want.get(k))
        assert not differing, f"record of step {got['step']} differs in {differing}"
