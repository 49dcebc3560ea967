"""Readout sizes (issue 18 row 8, issue 21): the readout's sets stream in chunks, so a test set of any size trains
and is read out in bounded memory; what still cannot fit (the N x N normal equations, or one chunk) is refused at the
start of the fit, naming the fields, before any step or output (it used to fail after the last step, asking the
allocator for 51.2 GB)."""

from __future__ import annotations

import pytest
from reliability_helpers import MONITOR_KWARGS, tiny_data, tiny_module, tiny_trainer

from spikelearn import _memory
from spikelearn import module as module_file
from spikelearn.callbacks import SpectrumMonitor, WeightSnapshot


@pytest.fixture
def machine_with_10_gb(monkeypatch):
    monkeypatch.setattr(_memory, "_host_available", lambda: 10 * 10**9)  # the same answer on any machine


def _callbacks(root):
    return [WeightSnapshot(dirpath=root / "snapshots"), SpectrumMonitor(dirpath=root / "record", **MONITOR_KWARGS)]


def test_a_width_whose_normal_equations_cannot_fit_is_refused_before_training(tmp_path, machine_with_10_gb):
    # N = 40000: the float64 system and its solve take 3 x 8 x N^2 = 38 GB, one chunk of 4096 rows 2.6 GB more;
    # W0 (40000 x 4) is small
    module = tiny_module(width=40_000, input_dim=4, readout=True)
    with pytest.raises(ValueError, match=r"`model.width` = 40000 with `model.readout` true \(its N x N normal equations "
                                         r"in float64\) .* needs 41 GB .* but only 10 GB"):
        tiny_trainer(tmp_path, 1, callbacks=_callbacks(tmp_path)).fit(module, tiny_data(input_dim=4))
    assert module.global_step == 0
    assert not (tmp_path / "snapshots").exists() and not (tmp_path / "record").exists()


def test_a_chunk_that_cannot_fit_is_refused_naming_test_batch_size(tmp_path, machine_with_10_gb):
    module = tiny_module(readout=True)
    with pytest.raises(ValueError, match=r"`data.test_batch_size` x `data.input_dim` = 1000000000 x 32 \(one chunk"):
        tiny_trainer(tmp_path, 1).fit(module, tiny_data(test_batch_size=10**9))
    assert module.global_step == 0


def test_without_readout_no_readout_size_is_checked(tmp_path, machine_with_10_gb):
    module = tiny_module(width=40_000, input_dim=4)  # readout off: no N x N system
    tiny_trainer(tmp_path, 1).fit(module, tiny_data(input_dim=4, test_batch_size=10**9))
    assert module.global_step == 1


def test_the_issues_test_size_trains_and_streams_bounded_chunks(tmp_path, machine_with_10_gb, monkeypatch):
    """``--data.test_size 200000000`` (51.2 GB as one tensor) is not refused: it streams. Reading 2e8 rows takes
    minutes, so the readout here only reads the first chunk of each set and checks its size."""
    seen, real = {}, module_file.streamed_readout

    def first_chunks(W, activation, ridge, fit_chunks, test_chunks, reduce_sum=None):
        seen["fit"], seen["test"] = next(iter(fit_chunks())), next(iter(test_chunks()))
        return real(W, activation, ridge, lambda: [seen["fit"]], lambda: [seen["test"]])

    monkeypatch.setattr(module_file, "streamed_readout", first_chunks)
    module, data = tiny_module(readout=True), tiny_data(test_size=200_000_000, test_batch_size=512)
    tiny_trainer(tmp_path, 2).fit(module, data)
    assert module.global_step == 2 and data.chunk_count("test") == 390_625
    assert seen["test"][0].shape == (512, 32) and seen["fit"][0].shape == (16, 32)
    assert set(module.readout_metrics) == {"readout/train_mse", "readout/test_mse", "readout/test_mse_stderr"}
