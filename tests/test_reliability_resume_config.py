"""A resume continues the same run: changed model / data fields or precision are refused by name (old and new
value) before any weight is loaded, through the CLI (--ckpt_path FILE or last) and through Trainer.fit; trainer
fields such as max_steps may change."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from reliability_helpers import tiny_data, tiny_module, tiny_trainer

from spikelearn.cli import build_cli
from spikelearn.module import RESUMABLE_FIELDS, check_resume_config


def _config(root: Path) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_steps": 2, "accelerator": "cpu", "devices": 1, "precision": "64-true", "logger": False,
            "enable_progress_bar": False, "default_root_dir": str(root),
            "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "init_args": {"dirpath": str(root / "checkpoints"), "every_n_train_steps": 1,
                                         "save_last": True}}],
        },
        "model": {"width": 16, "step_c": [1.0, 1.0], "step_alpha": [0.3, 0.45], "seed": 0},
        "data": {"input_dim": 16, "batch_size": 16, "test_size": 4, "readout_size": 4, "seed": 0},
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("resume")
    config = _config(root)
    build_cli(["fit", "--config", str(config)])
    return config, root / "checkpoints" / "last.ckpt"


def _resume(config: Path, ckpt: str | Path, *extra: str):
    return build_cli(["fit", "--config", str(config), "--ckpt_path", str(ckpt), *extra])


@pytest.mark.parametrize(("flags", "message"), [
    (["--model.seed", "5"], r"`model.seed` was 0, now 5"),
    (["--model.step_c", "[9, 9]"], r"`model.step_c` was \[1.0, 1.0\], now \[9.0, 9.0\]"),
    # 2b: without the check, torch's "size mismatch for W" (or LightningCLI's silent override) came first
    (["--model.width", "32", "--data.input_dim", "32"],
     r"`model.input_dim` was 16, now 32; `model.width` was 16, now 32; `data.input_dim` was 16, now 32"),
    # 2c
    (["--trainer.precision", "32-true"], r"`trainer.precision` was '64-true', now '32-true'"),
    (["--data.target", "he2"], r"`data.target` was 'he1', now 'he2'"),
    (["--data.batches", "reused"], r"`data.batches` was 'independent', now 'reused'"),
    (["--data.batch_size", "32"], r"`data.batch_size` was 16, now 32"),
])
def test_cli_resume_with_a_changed_field_is_refused_by_name(run, flags, message):
    config, last = run
    with pytest.raises(ValueError, match=r"Cannot resume .*last.ckpt with a changed config: .*" + message):
        _resume(config, last, *flags)


def test_cli_resume_with_the_keyword_last_is_checked_too(run, monkeypatch):
    config, _ = run
    monkeypatch.chdir(config.parent)
    with pytest.raises(ValueError, match=r"Cannot resume .*last.ckpt with a changed config: `model.seed` was 0, now 5"):
        _resume(config, "last", "--model.seed", "5", "--trainer.max_steps", "3")


def test_cli_resume_may_change_trainer_fields_and_readout(run, tmp_path):
    config, last = run
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(last.read_bytes())
    cli = _resume(config, copy, "--trainer.max_steps", "3", "--model.readout", "true",
                  "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false")
    assert cli.trainer.global_step == 3
    assert cli.model.readout and cli.model.readout_metrics  # the new value is used, not the checkpoint's


def test_trainer_fit_resume_refuses_a_changed_model_before_loading_weights(tmp_path):
    callbacks = [ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1)]
    tiny_trainer(tmp_path, 1, callbacks=callbacks, enable_checkpointing=True).fit(tiny_module(), tiny_data())
    with pytest.raises(ValueError, match=r"`model.width` was 32, now 16"):
        tiny_trainer(tmp_path, 2).fit(tiny_module(width=16), tiny_data(), ckpt_path=tmp_path / "last.ckpt")
    with pytest.raises(ValueError, match=r"`data.seed` was 1, now 2"):
        tiny_trainer(tmp_path, 2).fit(tiny_module(), tiny_data(seed=2), ckpt_path=tmp_path / "last.ckpt")
    with pytest.raises(ValueError, match=r"`trainer.precision` was '32-true', now '64-true'"):
        tiny_trainer(tmp_path, 2, precision="64-true").fit(tiny_module(), tiny_data(), ckpt_path=tmp_path / "last.ckpt")
    module = tiny_module(max_norm_growth=1e6)  # a resumable field
    tiny_trainer(tmp_path, 2).fit(module, tiny_data(test_size=8), ckpt_path=tmp_path / "last.ckpt")
    assert module.global_step == 2


def test_old_checkpoint_without_recorded_precision_is_judged_by_the_dtype_of_W():
    ckpt = {"state_dict": {"W": torch.zeros(2, 2, dtype=torch.float64)}}
    check_resume_config(ckpt, precision="64-true")
    with pytest.raises(ValueError, match=r"`trainer.precision`: the checkpoint's W is float64 \(64-true\), now '32-true'"):
        check_resume_config(ckpt, precision=None)


def test_resumable_fields_are_fields_of_the_module_and_data():
    import inspect

    from spikelearn.data import GaussianDataModule
    from spikelearn.module import TwoLayerModule

    names = {f"model.{p}" for p in inspect.signature(TwoLayerModule).parameters}
    names |= {f"data.{p}" for p in inspect.signature(GaussianDataModule).parameters}
    assert RESUMABLE_FIELDS <= names
