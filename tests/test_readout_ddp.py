"""The streamed readout under DDP (issue 21): each rank reads its share of the chunks of the fit and test sets, the
normal equations are summed over the ranks and torchmetrics syncs the errors, so a 2-process fit logs the readout
numbers of a 1-process fit, to rounding, and every rank returns the same numbers.

As in tests/test_spectrum_ddp.py the DDP run is a CLI subprocess (2 gloo processes on CPU; ``strategy="ddp"`` inside
pytest would make rank 1 re-run the pytest session) and the 1-process reference runs the same CLI in this process.
``tests/readout_dump.py`` writes each rank's numbers at full precision (TensorBoard keeps float32).

Tolerance: float64. The DDP ``W`` differs from the 1-process one by rounding (max |ΔW| 2.8e-16,
tests/test_reliability_ddp.py), and the sums over chunks are added in another order (per rank, then over the ranks):
the measured relative differences were 5.6e-16 (train MSE), 1.3e-15 (test MSE) and 8.9e-16 (its standard error), so
``REL = 1e-10`` leaves ~1e5x headroom.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spikelearn.cli import build_cli, config_path

TESTS = Path(__file__).resolve().parent
KEYS = ("readout/train_mse", "readout/test_mse", "readout/test_mse_stderr")
# 1000 test rows in chunks of 96: 11 chunks, 6 on rank 0 and 5 on rank 1 (the last one short); 200 fit rows: 3 chunks
COMMON = ["fit", "--config", str(config_path("two_step_reused")), "--model.width", "64", "--data.input_dim", "64",
          "--data.batch_size", "64", "--data.test_size", "1000", "--data.test_batch_size", "96",
          "--data.readout_size", "200", "--model.readout", "true", "--trainer.max_steps", "2",
          "--trainer.enable_progress_bar", "false", "--trainer.precision", "64-true",
          "--trainer.callbacks+=readout_dump.DumpReadout"]
REL = 1e-10  # see the module docstring


def _numbers(out: Path, rank: int) -> dict[str, float]:
    return json.loads((out / f"readout_rank{rank}.json").read_text())


@pytest.mark.slow
def test_ddp_readout_equals_one_process_and_every_rank_agrees(tmp_path, monkeypatch):
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "one")
    build_cli([*COMMON, "--trainer.logger.init_args.save_dir", str(tmp_path / "one")])
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", "spikelearn.cli", *COMMON, "--trainer.logger.init_args.save_dir", str(tmp_path / "two"),
         "--trainer.devices", "2", "--trainer.strategy", "ddp"],
        cwd=tmp_path / "two", env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    single, rank0, rank1 = _numbers(tmp_path / "one", 0), _numbers(tmp_path / "two", 0), _numbers(tmp_path / "two", 1)
    assert (single["world_size"], rank0["world_size"], rank1["world_size"]) == (1, 2, 2)
    assert rank0 == rank1  # the synced sums are the same on every rank
    differences = {key: abs(rank0[key] / single[key] - 1) for key in KEYS}
    assert all(difference <= REL for difference in differences.values()), differences
