"""Divergence: a non-finite loss, a non-finite W or a runaway ||W||_F stops the run with an error naming the
step, eta_t and the quantity, and the last good snapshot, record line and checkpoint stay on disk, readable."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from reliability_helpers import (
    MONITOR_KWARGS,
    CorruptBatchAt,
    CorruptGradientAt,
    cli_env,
    record_steps,
    run_cli,
    tiny_data,
    tiny_module,
    tiny_trainer,
    write_run_config,
)

from spikelearn.callbacks import SpectrumMonitor, WeightSnapshot, load_snapshots, read_records
from spikelearn.module import DivergenceError, load_weights

BAD_STEP = 3

# (module kwargs, extra callbacks, trainer precision, regex for the quantity)
CASES = {
    # labels of step 3 are NaN: the loss is non-finite before the update, W_2 is untouched
    "loss_nan": ({"step_c": [1.0, 1.0, 0.5]}, [CorruptBatchAt(BAD_STEP)], "64-true", r"The loss at step 3 \(eta_t = {eta}\) is nan"),
    # a NaN in the gradient of step 3 (finite loss): W_3 has a NaN entry (the norm guard is switched off with inf)
    "W_nonfinite": ({"step_c": [1.0, 1.0, 0.5], "max_norm_growth": math.inf}, [CorruptGradientAt(BAD_STEP)], "32-true",
                    r"W has non-finite entries after step 3 \(eta_t = {eta}\)"),
    # c_3 = 1e6: ||W_3||_F passes 10 ||W_0||_F
    "norm_growth": ({"step_c": [1.0, 1.0, 1e6], "max_norm_growth": 10.0}, [], "64-true",
                    r"\|\|W\|\|_F = \S+ after step 3 \(eta_t = {eta}\) exceeds model.max_norm_growth"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_divergence_names_step_eta_quantity_and_keeps_last_good_state(tmp_path, case):
    kwargs, extra, precision, pattern = CASES[case]
    module = tiny_module(step_alpha=[0.3, 0.45, 0.2], **kwargs)
    eta = f"{module.eta(BAD_STEP):.6g}".replace("+", r"\+").replace(".", r"\.")
    callbacks = [WeightSnapshot(dirpath=tmp_path / "snapshots", first_k=100),
                 SpectrumMonitor(dirpath=tmp_path / "record", **MONITOR_KWARGS),
                 ModelCheckpoint(dirpath=tmp_path / "checkpoints", every_n_train_steps=1, save_last=True), *extra]
    trainer = tiny_trainer(tmp_path, 6, callbacks=callbacks, precision=precision, enable_checkpointing=True)
    with pytest.raises(DivergenceError, match=pattern.format(eta=eta)):
        trainer.fit(module, tiny_data())

    # last good snapshot: steps 0..2, all finite, and nothing of the bad step
    snapshots = load_snapshots(tmp_path / "snapshots")
    assert [s.step for s in snapshots] == [0, 1, 2]
    assert all(torch.isfinite(s.weights["W"]).all() for s in snapshots)
    # last good record line: steps 0..2, every line complete (read_records raises on a truncated one)
    assert record_steps(read_records(tmp_path / "record" / "spectra.jsonl")) == [0, 1, 2]
    # the checkpoint of step 2 matches the snapshot of step 2, so the run can be resumed or inspected
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == BAD_STEP - 1
    assert torch.equal(load_weights(last)["W"].to(snapshots[-1].weights["W"].dtype), snapshots[-1].weights["W"])


def test_norm_guard_is_configurable(tmp_path):
    # the same large third step passes with a looser factor: the guard is the user's setting, not a constant
    module = tiny_module(step_c=[1.0, 1.0, 1e6], step_alpha=[0.3, 0.45, 0.2], max_norm_growth=1e12)
    tiny_trainer(tmp_path, 3, precision="64-true").fit(module, tiny_data())
    assert module.global_step == 3 and torch.isfinite(module.W).all()


@pytest.mark.parametrize("bad", [1.0, 0.0, -3.0, math.nan, "10", True, None])
def test_norm_guard_rejects_bad_factors(bad):
    with pytest.raises(ValueError, match="model.max_norm_growth"):
        tiny_module(max_norm_growth=bad)


@pytest.mark.slow
def test_divergence_through_the_cli_is_a_clear_error(tmp_path):
    config = write_run_config(tmp_path / "run.yaml", tmp_path, max_steps=5, checkpoint_every=1)
    result = run_cli(config, "--model.step_c", "[1.0, 1.0, 1e6]", "--model.max_norm_growth", "10", cwd=tmp_path,
                     env=cli_env(), check=False)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("spikelearn: error: ||W||_F = "), last_line  # one clear line (issue 11 row 9)
    assert "after step 3 (eta_t = " in last_line and "max_norm_growth" in last_line
    assert [s.step for s in load_snapshots(tmp_path / "snapshots")] == [0, 1, 2]
    assert record_steps(read_records(tmp_path / "record" / "spectra.jsonl")) == [0, 1, 2]


@pytest.mark.parametrize(("c", "precision", "match"), [
    (1e38, "32-true", r"`model.step_c\[2\]` = 1e\+38 gives a learning rate eta_3 sqrt\(N\) .* torch.float32"),
    (5e307, "64-true", r"`model.step_c\[2\]` = 5e\+307 gives a learning rate eta_3 sqrt\(N\) .* torch.float64"),
])
def test_step_size_beyond_the_dtype_is_a_config_error_before_training(tmp_path, c, precision, match):
    # found by this suite: torch's SGD raised "value cannot be converted to type float without overflow" mid-run
    module = tiny_module(step_c=[1.0, 1.0, c], step_alpha=[0.3, 0.45, 0.2])
    with pytest.raises(ValueError, match=match):
        tiny_trainer(tmp_path, 3, precision=precision).fit(module, tiny_data())
    assert module.global_step == 0


def test_infinite_step_size_is_a_config_error():
    with pytest.raises(ValueError, match=r"`model.step_c\[0\]` = 1e\+300 and `model.step_alpha\[0\]` = 50.0 give eta_1"):
        tiny_module(step_c=[1e300], step_alpha=[50.0])
