"""Step-keyed batches: independent, reused, resampled; DDP shards; validation (SPEC §1, "batches")."""

from __future__ import annotations

import pytest
import torch

from spikelearn.data import GaussianDataModule, StepIndices


def _data(**kwargs):
    return GaussianDataModule(**{"input_dim": 12, "batch_size": 8, "seed": 5, **kwargs})


def test_reused_batches_are_identical_at_every_step():
    data = _data(batches="reused")
    first = data.full_batch(1)
    for step in range(2, 6):
        batch = data.full_batch(step)
        assert torch.equal(batch.X, first.X) and torch.equal(batch.y, first.y)


def test_independent_batches_never_repeat():
    data = _data(batches="independent")
    rows = torch.cat([data.full_batch(step).X for step in range(1, 21)])
    assert torch.unique(rows, dim=0).shape[0] == rows.shape[0]


def test_resample_every_m_steps():
    data = _data(batches="resample_every", resample_every=3)
    assert [data.draw_index(t) for t in range(1, 8)] == [1, 1, 1, 2, 2, 2, 3]
    assert torch.equal(data.full_batch(1).X, data.full_batch(3).X)
    assert not torch.equal(data.full_batch(3).X, data.full_batch(4).X)


def test_batch_is_a_pure_function_of_seed_and_step():
    assert torch.equal(_data().full_batch(7).X, _data().full_batch(7).X)
    assert not torch.equal(_data().full_batch(7).X, _data(seed=6).full_batch(7).X)


def test_labels_follow_the_target():
    data = _data(target="he2")
    batch = data.full_batch(1, dtype=torch.float64)
    torch.testing.assert_close(batch.y, data.target(batch.X, data.directions))


def test_noise_is_added_with_its_std():
    clean, noisy = _data(batch_size=20000, noise_std=0.5), _data(batch_size=20000, noise_std=0.5)
    batch = noisy.full_batch(1, dtype=torch.float64)
    residual = batch.y - clean.target(batch.X, clean.directions)
    # sample std of 20000 Gaussians: relative standard error 1/sqrt(2*20000) = 0.5 %, so 3 %
    assert abs(float(residual.std()) - 0.5) < 0.015


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_rank_shards_concatenate_to_the_full_batch(world_size):
    data = _data(batch_size=8)
    shards = [data.local_batch(3, rank, world_size) for rank in range(world_size)]
    assert torch.equal(torch.cat([s.X for s in shards]), data.full_batch(3).X)


def test_test_and_readout_sets_differ_from_training_batches():
    data = _data()
    X_test, _ = data.test_set()
    X_fit, _ = data.readout_set()
    assert not torch.equal(X_test[:8], data.full_batch(1).X)
    assert not torch.equal(X_fit[: X_test.shape[0]][:8], X_test[:8])


def test_readout_size_zero_reuses_the_first_batch():
    data = _data(readout_size=0)
    assert torch.equal(data.readout_set()[0], data.full_batch(1).X)


def test_step_indices_count_from_their_start():
    iterator = iter(StepIndices(4))
    assert [int(next(iterator)) for _ in range(3)] == [4, 5, 6]


def test_directions_saved_and_checked_on_load():
    data = _data(target="staircase")
    state = data.state_dict()
    _data(target="staircase").load_state_dict(state)
    with pytest.raises(ValueError, match="target directions"):
        _data(target="staircase", seed=9).load_state_dict(state)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"input_dim": 0}, "data.input_dim"),
    ({"batch_size": -3}, "data.batch_size"),
    ({"batch_size": 2.5}, "data.batch_size"),
    ({"batches": "fresh"}, "data.batches"),
    ({"batches": "reused", "resample_every": 2}, "data.resample_every"),
    ({"batches": "resample_every"}, "data.resample_every"),
    ({"batches": "resample_every", "resample_every": 0}, "data.resample_every"),
    ({"noise_std": -1.0}, "data.noise_std"),
    ({"noise_std": float("nan")}, "data.noise_std"),
    ({"seed": -1}, "data.seed"),
    ({"test_size": 0}, "data.test_size"),
    ({"readout_size": -1}, "data.readout_size"),
    ({"target": "he9"}, "target"),
    ({"target": "additive", "target_components": ["he1", "he2"], "input_dim": 1}, "rank <= d"),
])
def test_bad_data_config_names_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _data(**kwargs)
