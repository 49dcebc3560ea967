"""Every user error of `spikelearn fit` ends in one clear last line naming the field or the file (issue 11 row 9):
a GPU accelerator without a GPU, a NaN step size, a bad callback argument, a YAML syntax error. Run through the
console entry point `main` in-process (what `spikelearn fit` runs), reading its stderr."""

from __future__ import annotations

import pytest
import torch
import yaml

from spikelearn.cli import main


def _config(root, **monitor):
    config = {
        "trainer": {"max_steps": 1, "accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                    "enable_checkpointing": False, "default_root_dir": str(root),
                    "callbacks": [{"class_path": "spikelearn.callbacks.SpectrumMonitor",
                                   "init_args": {"engine": {"k": 4, **monitor}}}]},
        "model": {"width": 16}, "data": {"input_dim": 16, "batch_size": 16, "test_size": 4, "readout_size": 4},
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _last_line(capsys, args) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args])
    assert exit_info.value.code not in (0, None)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    return lines[-1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_accelerator_without_a_gpu(tmp_path, capsys):
    line = _last_line(capsys, ["--config", str(_config(tmp_path)), "--trainer.accelerator", "gpu"])
    assert line.startswith("spikelearn: error: `trainer.accelerator`: no GPU is available"), line
    assert "--trainer.accelerator cpu" in line


def test_nan_step_size_names_the_field(tmp_path, capsys):
    line = _last_line(capsys, ["--config", str(_config(tmp_path)), "--model.step_c", "[nan, 1.0]"])
    assert line == "error: `model.step_c`: Expected a float. Got value: nan", line


def test_bad_callback_argument_names_the_callback_and_the_argument(tmp_path, capsys):
    # SpectrumMonitor's `engine: {k: 0}`: the engine's config refuses it, naming itself and the field
    line = _last_line(capsys, ["--config", str(_config(tmp_path, k=0))])
    assert line == "spikelearn: error: EngineConfig: `k` must be an integer >= 1, got 0.", line


def test_yaml_syntax_error_names_the_file_and_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("trainer:\n  max_steps: [1\nmodel: {width: 16\n")
    line = _last_line(capsys, ["--config", str(path)])
    assert line.startswith(f"error: YAML syntax error in {path}, line 3, column 6: "), line
    assert "<unicode string>" not in line


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    # only user errors are folded into one line; anything else still raises with its traceback
    from spikelearn import cli

    monkeypatch.setattr(cli, "build_cli", lambda args: (_ for _ in ()).throw(KeyError("internal")))
    with pytest.raises(KeyError, match="internal"):
        main(["fit"])


def test_run_directory_in_use_is_one_line(tmp_path, capsys):
    from spikelearn.run_lock import RunDirectoryLock

    with RunDirectoryLock(tmp_path):
        line = _last_line(capsys, ["--config", str(_config(tmp_path))])
    assert line.startswith(f"spikelearn: error: Run directory {tmp_path} is in use by another spikelearn run (pid "), line
