"""Untrusted files: a snapshot or checkpoint crafted to execute code when unpickled is refused, unread, with a
message saying why, and the payload never runs."""

from __future__ import annotations

import pickle

import pytest
import torch
from reliability_helpers import Evil, tiny_data, tiny_module, tiny_trainer

from spikelearn.callbacks import load_snapshot, load_snapshots
from spikelearn.cli import build_cli, config_path
from spikelearn.module import load_checkpoint, load_weights


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "the crafted payload executed"


def _evil_checkpoint(path, marker):
    torch.save({"state_dict": {"W": torch.zeros(2, 2)}, "payload": Evil(marker)}, path)
    return path


def test_the_payload_is_real(tmp_path):
    # guard: unpickling the crafted object without protection does run it (so the tests below mean something)
    marker = tmp_path / "PWNED"
    pickle.loads(pickle.dumps(Evil(marker)))
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickled_snapshot_is_refused(tmp_path, marker, protocol):
    path = tmp_path / "step_00000001.safetensors"
    path.write_bytes(pickle.dumps({"W": Evil(marker)}, protocol=protocol))
    with pytest.raises(ValueError, match=r"not a safetensors file \(pickle data\).*never unpickles"):
        load_snapshot(path)
    with pytest.raises(ValueError, match="never unpickles"):
        load_snapshots(tmp_path)


def test_torch_saved_snapshot_in_a_snapshot_dir_is_refused(tmp_path, marker):
    _evil_checkpoint(tmp_path / "step_00000000.safetensors", marker)  # a zip archive, not safetensors
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_snapshots(tmp_path)


def test_stray_pickle_among_snapshots_is_refused_by_name(tmp_path, marker):
    (tmp_path / "extra.pt").write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(ValueError, match=r"extra.pt is not a safetensors file"):
        load_snapshots(tmp_path)


def test_lying_safetensors_header_is_refused(tmp_path):
    path = tmp_path / "step_00000001.safetensors"
    path.write_bytes((10**9).to_bytes(8, "little") + b'{"W": {}}')
    with pytest.raises(ValueError, match="no safetensors header"):
        load_snapshot(path)


def test_crafted_checkpoint_is_refused_by_load_weights(tmp_path, marker):
    path = _evil_checkpoint(tmp_path / "evil.ckpt", marker)
    for loader in (load_checkpoint, load_weights):
        with pytest.raises(ValueError, match=r"Refused to load .*evil.ckpt.*weights-only.*execute code"):
            loader(path)


def test_genuine_checkpoint_loads_weights_only(tmp_path):
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, 1)
    trainer.fit(module, tiny_data())
    trainer.save_checkpoint(tmp_path / "good.ckpt")
    assert torch.equal(load_weights(tmp_path / "good.ckpt")["W"], module.W.detach())


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    (tmp_path / "tiny.ckpt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="tiny.ckpt is not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "tiny.ckpt")
    with pytest.raises(ValueError, match="junk.ckpt is not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.ckpt")
    with pytest.raises(FileNotFoundError, match="No checkpoint file"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_cli_resume_from_a_crafted_checkpoint_is_refused(tmp_path, marker, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _evil_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(ValueError, match="Refused to load"):
        build_cli(["fit", "--config", str(config_path("two_step_reused")), "--model.width", "16",
                   "--data.input_dim", "16", "--data.batch_size", "16", "--trainer.logger", "false",
                   "--trainer.enable_progress_bar", "false", "--ckpt_path", str(path)])


def test_trainer_resume_from_a_crafted_checkpoint_does_not_execute(tmp_path, marker):
    # without the CLI, Lightning's own loading (torch's weights-only default) must refuse as well
    path = _evil_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        tiny_trainer(tmp_path, 2).fit(tiny_module(), tiny_data(), ckpt_path=path)
