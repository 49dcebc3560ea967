"""The issue's "also look at" items (issue 18): a checkpoint without hyperparameters is not resumed silently,
``max_steps -1`` warns that the run has no end, and a snapshot whose ``eta`` is NaN or whose tensors are not 1-D /
2-D is refused by name. (A NaN ``W`` in a checkpoint: test_reliability_one_line.)"""

from __future__ import annotations

import pytest
import torch
from reliability_helpers import fit_with_record
from safetensors.torch import save_file

from spikelearn.callbacks import load_snapshot
from spikelearn.callbacks._io import SNAPSHOT_FORMAT
from spikelearn.cli import build_cli


def test_a_checkpoint_without_hyperparameters_warns_on_resume(tmp_path):
    fit_with_record(tmp_path, 2)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    del checkpoint["hyper_parameters"]
    torch.save(checkpoint, tmp_path / "bare.ckpt")
    with pytest.warns(UserWarning, match=r"bare.ckpt has no hyper_parameters: .* not checked for a changed config"):
        fit_with_record(tmp_path, 3, ckpt_path=tmp_path / "bare.ckpt")


def test_max_steps_minus_one_warns_that_the_run_has_no_end(tmp_path):
    cli = build_cli(["--config", "many_steps", "--model.width", "16", "--data.input_dim", "16",
                     "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "-1"], run=False)
    with pytest.warns(UserWarning, match=r"`trainer.max_steps` is -1: this run has no step limit"):
        cli._check_max_steps()


def _snapshot(path, eta: str = "0.5", **tensors):
    tensors = tensors or {"weight/W": torch.eye(2)}
    save_file(tensors, str(path), metadata={"format": SNAPSHOT_FORMAT, "step": "1", "eta": eta, "params": '["W"]'})
    return path


def test_a_snapshot_with_a_nan_eta_is_refused_by_name(tmp_path):
    path = _snapshot(tmp_path / "step_00000001.safetensors", eta="NaN")
    with pytest.raises(ValueError, match=rf"{path}: metadata `eta` must be a number \(not NaN\) or null"):
        load_snapshot(path)


@pytest.mark.parametrize("tensors", [{"weight/W": torch.ones(4)}, {"weight/W": torch.ones(2, 2, 2)},
                                     {"weight/W": torch.eye(2), "a": torch.ones(2, 1)}], ids=["W-1d", "W-3d", "a-2d"])
def test_a_snapshot_tensor_of_the_wrong_rank_is_refused_by_name(tmp_path, tensors):
    path = _snapshot(tmp_path / "step_00000001.safetensors", **tensors)
    with pytest.raises(ValueError, match=rf"{path}: tensor .* has shape"):
        load_snapshot(path)
