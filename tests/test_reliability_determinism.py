"""Determinism: the same config and seed give bit-identical W_T, snapshots and records across runs on CPU,
whatever the global RNG state (batches are keyed by (seed, step), not drawn from torch's global generator).
The same through two CLI processes is in test_reliability_kill_resume.py (slow)."""

from __future__ import annotations

import pytest
import torch
from reliability_helpers import MONITOR_KWARGS, comparable, tiny_data, tiny_module, tiny_trainer

from spikelearn.callbacks import SpectrumMonitor, WeightSnapshot, load_snapshots, read_records


def _run(root, global_seed, **data_kwargs):
    torch.manual_seed(global_seed)  # must not matter
    module = tiny_module(step_c=[1.0, 1.0, 0.5], step_alpha=[0.3, 0.45, 0.2])
    callbacks = [WeightSnapshot(dirpath=root / "snapshots", first_k=100),
                 SpectrumMonitor(dirpath=root / "record", **MONITOR_KWARGS)]
    tiny_trainer(root, 5, precision="64-true", callbacks=callbacks).fit(module, tiny_data(**data_kwargs))
    return module.W.detach().clone()


@pytest.mark.parametrize("batches", [{"batches": "independent"}, {"batches": "resample_every", "resample_every": 2}])
def test_same_seed_bit_identical_weights_snapshots_and_records(tmp_path, batches):
    W_a, W_b = _run(tmp_path / "a", 1, **batches), _run(tmp_path / "b", 12345, **batches)
    assert torch.equal(W_a, W_b)
    snaps_a, snaps_b = load_snapshots(tmp_path / "a" / "snapshots"), load_snapshots(tmp_path / "b" / "snapshots")
    assert [s.step for s in snaps_a] == [s.step for s in snaps_b] == list(range(6))
    for x, y in zip(snaps_a, snaps_b):
        assert torch.equal(x.weights["W"], y.weights["W"]) and x.eta == y.eta
    records_a = read_records(tmp_path / "a" / "record" / "spectra.jsonl")
    records_b = read_records(tmp_path / "b" / "record" / "spectra.jsonl")
    assert [comparable(r) for r in records_a] == [comparable(r) for r in records_b]


def test_different_seed_different_weights(tmp_path):
    # guard that the comparison above can fail: another data seed changes W_T
    assert not torch.equal(_run(tmp_path / "a", 0), _run(tmp_path / "b", 0, seed=2))
