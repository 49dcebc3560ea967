"""Absurd sizes are refused before anything is allocated or written, naming the fields, the bytes needed and the
memory available (not an allocator error for 205 GB, nor a failure at step 1 after the outputs were written)."""

from __future__ import annotations

import pytest
from reliability_helpers import MONITOR_KWARGS, tiny_data, tiny_module, tiny_trainer

from spikelearn import _memory
from spikelearn.callbacks import SpectrumMonitor, WeightSnapshot
from spikelearn.module import TwoLayerModule


@pytest.fixture
def machine_with_10_gb(monkeypatch):
    monkeypatch.setattr(_memory, "_host_available", lambda: 10 * 10**9)  # the same answer on any machine


def test_the_real_memory_is_read():
    assert _memory.available_memory("cpu") is None or _memory.available_memory("cpu") > 0


def test_huge_width_and_input_dim_are_refused_before_drawing_W0(machine_with_10_gb):
    # 160000 x 160000: W0 is 102 GB in float32 (its float64 draw is one 64 MiB row block at a time); nothing is
    # allocated here
    with pytest.raises(ValueError, match=r"`model.width` x `model.input_dim` = 160000 x 160000 \(drawing W0\) needs "
                                         r"102 GB \(102467108864 bytes\) on cpu, but only 10 GB \(10000000000 bytes\) "
                                         r"are available"):
        TwoLayerModule(width=160_000, input_dim=160_000)


def test_the_check_uses_the_memory_available(monkeypatch):
    monkeypatch.setattr(_memory, "_host_available", lambda: 10**6)
    with pytest.raises(ValueError, match=r"needs 0.0205 GB \(20480000 bytes\) on cpu, but only 0.001 GB"):  # small: one piece
        tiny_module(width=1024, input_dim=1000)
    monkeypatch.setattr(_memory, "_host_available", lambda: None)  # unknown: no check
    tiny_module(width=1024, input_dim=1000)


def test_huge_batch_is_refused_at_setup_before_any_output(tmp_path, machine_with_10_gb):
    data = tiny_data(batch_size=400_000_000)  # 400M x 32 float32 = 54 GB per step
    callbacks = [WeightSnapshot(dirpath=tmp_path / "snapshots"), SpectrumMonitor(dirpath=tmp_path / "record",
                                                                                 **MONITOR_KWARGS)]
    with pytest.raises(ValueError, match=r"`data.batch_size` x `data.input_dim` = 400000000 x 32 \(one step's batch, "
                                         r"4-byte floats\) needs 56 GB \(56000000000 bytes\) on cpu, but only 10 GB"):
        tiny_trainer(tmp_path, 1, callbacks=callbacks).fit(tiny_module(), data)
    assert not (tmp_path / "snapshots").exists() and not (tmp_path / "record").exists()
