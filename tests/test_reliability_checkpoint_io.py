"""Checkpoints (issue 11 rows 4, 4b, 5, 11): written atomically in their own directory by the CLI's default
AtomicCheckpointIO (a full disk leaves the previous file, never a torn one), with the user's umask mode, and read
weights-only whichever way the path is given (a file, `last`, SLURM's automatic resume), keeping torch's reason."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from reliability_helpers import tiny_data, tiny_module, tiny_trainer

from spikelearn.checkpoint_io import AtomicCheckpointIO
from spikelearn.cli import build_cli
from spikelearn.module import load_checkpoint


class SystemCall:
    """Unpickling this calls os.system (torch names it "GLOBAL posix.system")."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "the crafted payload executed"


def _evil(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"W": torch.zeros(2, 2)}, "payload": SystemCall(marker)}, path)
    return path


def _config(root: Path, max_steps: int = 2) -> Path:
    config = {
        "trainer": {"max_steps": max_steps, "accelerator": "cpu", "devices": 1, "logger": False,
                    "enable_progress_bar": False, "default_root_dir": str(root),
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(root / "checkpoints"), "every_n_train_steps": 1,
                                                 "save_last": True}}]},
        "model": {"width": 16}, "data": {"input_dim": 16, "batch_size": 16, "test_size": 4, "readout_size": 4},
    }
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    return root / "run.yaml"


def test_refusal_keeps_torchs_reason(tmp_path, marker):
    path = _evil(tmp_path / "evil.ckpt", marker)
    with pytest.raises(ValueError, match=r"Refused to load .*evil.ckpt: it is not a weights-only checkpoint \(Trying "
                                         r"to load unsupported GLOBAL posix.system whose module posix is blocked\)"):
        load_checkpoint(path)


def test_cli_ckpt_path_file_keeps_torchs_reason(tmp_path, marker):
    path = _evil(tmp_path / "evil.ckpt", marker)
    with pytest.raises(ValueError, match=r"Refused to load .*evil.ckpt.*GLOBAL posix.system"):
        build_cli(["fit", "--config", str(_config(tmp_path)), "--ckpt_path", str(path)])


def test_cli_ckpt_path_last_gets_the_same_refusal(tmp_path, marker, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _evil(tmp_path / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(ValueError, match=r"Refused to load .*checkpoints/last.ckpt: it is not a weights-only "
                                         r"checkpoint \(Trying to load unsupported GLOBAL posix.system"):
        build_cli(["fit", "--config", str(_config(tmp_path)), "--ckpt_path", "last"])


def test_cli_default_writes_checkpoints_beside_their_target(tmp_path, monkeypatch):
    """Lightning's own writer moved a temporary file from the system temp directory (shutil.move: a copy across
    filesystems, torn when the disk fills); every checkpoint must reach its name by a same-directory rename."""
    renames, moves = [], []
    real_replace, real_move = os.replace, shutil.move
    monkeypatch.setattr(os, "replace", lambda src, dst, **kw: (renames.append((Path(src), Path(dst))),
                                                               real_replace(src, dst, **kw))[1])
    monkeypatch.setattr(shutil, "move", lambda src, dst, *a, **kw: (moves.append((Path(src), Path(dst))),
                                                                    real_move(src, dst, *a, **kw))[1])
    cli = build_cli(["fit", "--config", str(_config(tmp_path))])
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    written = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert written == ["epoch=0-step=2.ckpt", "last.ckpt"], written
    ckpt_moves = [(s, d) for s, d in renames + moves if d.suffix == ".ckpt"]
    assert ckpt_moves and not [m for m in moves if m[1].suffix == ".ckpt"], moves
    assert all(src.parent == dst.parent for src, dst in ckpt_moves), ckpt_moves


def test_full_disk_mid_checkpoint_leaves_the_previous_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "state_dict": {"W": torch.ones(4, 4)}}, target)
    real_save = torch.save

    def fill_the_disk(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fill_the_disk)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"global_step": 2, "state_dict": {"W": torch.zeros(4, 4)}}, target)
    monkeypatch.setattr(torch, "save", real_save)
    assert io.load_checkpoint(target)["global_step"] == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"], "a temporary file was left behind"


def test_checkpoints_get_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        AtomicCheckpointIO().save_checkpoint({"global_step": 0}, tmp_path / "a.ckpt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.ckpt").stat().st_mode) == 0o640


def test_trainer_with_the_plugin_resumes_bit_exact(tmp_path):
    def fit(max_steps, ckpt_path=None):
        module = tiny_module()
        callbacks = [ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, every_n_train_steps=1)]
        tiny_trainer(tmp_path, max_steps, callbacks=callbacks, enable_checkpointing=True,
                     plugins=[AtomicCheckpointIO()]).fit(module, tiny_data(), ckpt_path=ckpt_path)
        return module.W.detach()

    straight = fit(3)
    fit(2)
    assert torch.equal(fit(3, tmp_path / "ck" / "last.ckpt"), straight)
