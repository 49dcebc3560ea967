"""WeightSnapshot and the crash-safe files: exact round trips, atomic writes, no pickles, truncated records."""

from __future__ import annotations

import json
import os
import pickle
import struct

import lightning as L
import pytest
import torch

from spikelearn.callbacks import WeightSnapshot, load_snapshot, load_snapshots, read_records
from spikelearn.callbacks._cadence import Cadence
from spikelearn.callbacks._io import append_record, save_snapshot, snapshot_filename
from spikelearn.data import GaussianDataModule
from spikelearn.module import TwoLayerModule


def _trainer(tmp_path, callbacks, max_steps, **kwargs):
    return L.Trainer(
        max_steps=max_steps, max_epochs=-1, accelerator="cpu", devices=1, logger=False, callbacks=callbacks,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        default_root_dir=tmp_path, use_distributed_sampler=False, **kwargs,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_snapshot_round_trip_is_exact(tmp_path, dtype):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(7, 5, generator=g, dtype=dtype)
    a = torch.randn(7, generator=g, dtype=dtype)
    B = torch.linalg.qr(torch.randn(5, 2, generator=g, dtype=torch.float64))[0]
    path = tmp_path / snapshot_filename(3)
    save_snapshot(path, step=3, weights={"W": W, "net.0.weight": W[:2]}, eta=0.1 + 0.2, a=a, B=B)
    snap = load_snapshot(path)
    assert snap.step == 3 and snap.eta == 0.1 + 0.2  # repr round-trips the float exactly
    assert torch.equal(snap.weights["W"], W) and snap.weights["W"].dtype == dtype
    assert torch.equal(snap.weights["net.0.weight"], W[:2])
    assert torch.equal(snap.a, a) and torch.equal(snap.B, B)



@pytest.mark.parametrize("dtypes", [(torch.float32, torch.float32, torch.float32), (torch.float64, torch.float64, None),
                                    (torch.bfloat16, torch.float32, torch.float32), (torch.float16, None, torch.float64)])
def test_streamed_snapshot_is_byte_identical_to_safetensors_save(tmp_path, dtypes):
    """The writer streams the header and each tensor's buffer; the file is what ``safetensors.torch.save`` builds."""
    from safetensors.torch import save

    w_dtype, a_dtype, b_dtype = dtypes
    g = torch.Generator().manual_seed(0)
    weights = {"W": torch.randn(7, 5, generator=g).to(w_dtype), "V": torch.randn(3, 5, generator=g).to(w_dtype)}
    a = None if a_dtype is None else torch.randn(7, generator=g).to(a_dtype)
    B = None if b_dtype is None else torch.randn(5, 2, generator=g).to(b_dtype)
    path = tmp_path / snapshot_filename(3)
    size = save_snapshot(path, step=3, weights=weights, eta=0.25, a=a, B=B)
    tensors = {f"weight/{k}": v for k, v in weights.items()} | ({} if a is None else {"a": a}) | ({} if B is None else {"B": B})
    metadata = {"format": "spikelearn.snapshot/1", "step": "3", "eta": repr(0.25), "params": '["W", "V"]'}
    ours, theirs = path.read_bytes(), save(tensors, metadata=metadata)
    assert size == len(ours) == len(theirs)
    head = 8 + struct.unpack("<Q", ours[:8])[0]
    assert json.loads(ours[8:head]) == json.loads(theirs[8:head])  # same header (its metadata keys may be reordered)
    assert ours[head:] == theirs[head:]  # same tensor bytes in the same order


def test_snapshot_of_a_cpu_weight_writes_from_the_weight_itself():
    """One host buffer: a contiguous CPU weight is streamed from its own storage, not from a copy."""
    from spikelearn.callbacks._io import _snapshot_layout

    W = torch.randn(64, 32)
    layout = _snapshot_layout(1, {"W": W}, None, None, None)
    assert [t.data_ptr() for t in layout.tensors] == [W.data_ptr()]

def test_weight_snapshot_in_a_fit(tmp_path):
    module = TwoLayerModule(width=64, input_dim=48, step_c=(1.0, 1.0), step_alpha=(0.2, 0.3))
    data = GaussianDataModule(input_dim=48, batch_size=64, batches="reused")
    W0 = module.W.detach().clone()
    callback = WeightSnapshot(dirpath=tmp_path / "snaps", first_k=2, every_n_steps=3)
    _trainer(tmp_path, [callback], 6).fit(module, data)
    snaps = load_snapshots(tmp_path / "snaps")
    assert [s.step for s in snaps] == [0, 1, 2, 3, 6] == [h["step"] for h in callback.history]
    assert torch.equal(snaps[0].weights["W"], W0)
    assert torch.equal(snaps[-1].weights["W"], module.W.detach())
    assert snaps[0].eta is None and snaps[2].eta == module.eta(2)
    assert torch.equal(snaps[1].a, module.a) and torch.equal(snaps[1].B, data.directions)


def test_weight_snapshot_log_spaced_and_disk_cap(tmp_path):
    module = TwoLayerModule(width=32, input_dim=32, step_c=(0.5,), step_alpha=(0.1,))
    data = GaussianDataModule(input_dim=32, batch_size=32)
    one_file_mb = (32 * 32 + 32 + 32) * 4 / 2**20
    callback = WeightSnapshot(dirpath=tmp_path, first_k=1, per_decade=4, max_disk_mb=3.5 * one_file_mb)
    with pytest.warns(UserWarning, match="max_disk_mb"):
        _trainer(tmp_path, [callback], 12).fit(module, data)
    assert [h["step"] for h in callback.history] == [0, 1, 2]  # log-spaced 0,1,2,3,6,10 capped after 3 files


def test_failed_write_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    path = tmp_path / snapshot_filename(1)
    save_snapshot(path, step=1, weights={"W": torch.zeros(3, 3)})
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated mid-write)")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="simulated"):
        save_snapshot(path, step=1, weights={"W": torch.ones(3, 3)})
    with pytest.raises(OSError, match="simulated"):
        save_snapshot(tmp_path / snapshot_filename(2), step=2, weights={"W": torch.ones(3, 3)})
    monkeypatch.undo()
    assert path.read_bytes() == good  # the old complete file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == [snapshot_filename(1)]  # no partial step 2, no temp files
    assert [s.step for s in load_snapshots(tmp_path)] == [1]


class _Evil:
    def __reduce__(self):
        return (open, ("/tmp/spikelearn-pwned-marker", "w"))


@pytest.mark.parametrize("name", [snapshot_filename(4), "weights.pt"])
def test_loading_refuses_a_pickle(tmp_path, name):
    marker = "/tmp/spikelearn-pwned-marker"
    if os.path.exists(marker):
        os.unlink(marker)
    save_snapshot(tmp_path / snapshot_filename(0), step=0, weights={"W": torch.zeros(2, 2)})
    (tmp_path / name).write_bytes(pickle.dumps({"W": _Evil()}))
    with pytest.raises(ValueError, match="not a safetensors file.*pickle"):
        load_snapshots(tmp_path)
    with pytest.raises(ValueError, match="never unpickles"):
        load_snapshot(tmp_path / name)
    assert not os.path.exists(marker)


def test_loading_refuses_foreign_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / snapshot_filename(0)))
    with pytest.raises(ValueError, match="not a spikelearn snapshot"):
        load_snapshots(tmp_path)


def test_read_records_reports_a_truncated_last_line(tmp_path):
    path = tmp_path / "spectra.jsonl"
    append_record(path, {"step": 0, "outliers": 0, "x": float("nan")})
    append_record(path, {"step": 1, "outliers": 1})
    with open(path, "a") as handle:
        handle.write('{"step": 2, "outl')  # a crash mid-write
    with pytest.raises(ValueError, match=r"spectra\.jsonl: line 3 is truncated"):
        read_records(path)
    assert read_records(path, drop_truncated=True) == [{"step": 0, "outliers": 0, "x": None}, {"step": 1, "outliers": 1}]
    path.write_text('{"step": 0}\n[1, 2]\n')
    with pytest.raises(ValueError, match="line 2 is not a JSON object"):
        read_records(path)


def test_errors_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="`every_n_steps` must be an integer >= 1"):
        WeightSnapshot(every_n_steps=0)
    with pytest.raises(ValueError, match="`max_disk_mb`"):
        WeightSnapshot(max_disk_mb=-1)
    with pytest.raises(ValueError, match="lists a name twice"):
        WeightSnapshot(params=["W", "W"])
    with pytest.raises(ValueError, match="`per_decade`"):
        Cadence(per_decade=0)
    module = TwoLayerModule(width=8, input_dim=8)
    with pytest.raises(ValueError, match=r"2-D parameter of TwoLayerModule, one of \['W'\]; got 'V'"):
        _trainer(tmp_path, [WeightSnapshot(params="V", dirpath=tmp_path)], 1).fit(module, GaussianDataModule(8, 8))
    with pytest.raises(FileNotFoundError):
        load_snapshots(tmp_path / "missing")
