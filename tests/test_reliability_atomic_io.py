"""Atomic files: a crash between writing and renaming a snapshot or the record leaves the previous state readable;
a partly written last JSON line is reported, not parsed; a crash mid-append during training is repaired on resume."""

from __future__ import annotations

import os

import pytest
import torch
from reliability_helpers import fit_with_record, record_steps

from spikelearn.callbacks import _io, load_snapshot, load_snapshots, read_records


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing on the way up may swallow it."""


def _crash(*args, **kwargs):
    raise Crash


def test_crash_before_rename_keeps_the_previous_snapshot(tmp_path, monkeypatch):
    path = tmp_path / _io.snapshot_filename(1)
    _io.save_snapshot(path, step=1, weights={"W": torch.ones(3, 2)}, eta=0.5)
    monkeypatch.setattr(_io.os, "replace", _crash)
    with pytest.raises(Crash):
        _io.save_snapshot(path, step=1, weights={"W": torch.zeros(3, 2)}, eta=0.7)
    monkeypatch.undo()
    snap = load_snapshot(path)
    assert torch.equal(snap.weights["W"], torch.ones(3, 2)) and snap.eta == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], "the temporary file was left behind"


def test_crash_before_rename_of_a_new_snapshot_leaves_no_file_under_its_name(tmp_path, monkeypatch):
    _io.save_snapshot(tmp_path / _io.snapshot_filename(0), step=0, weights={"W": torch.ones(2, 2)})
    monkeypatch.setattr(_io.os, "replace", _crash)
    with pytest.raises(Crash):
        _io.save_snapshot(tmp_path / _io.snapshot_filename(1), step=1, weights={"W": torch.ones(2, 2)})
    monkeypatch.undo()
    assert [s.step for s in load_snapshots(tmp_path)] == [0]


def test_temporary_file_of_a_killed_writer_is_ignored(tmp_path):
    # SIGKILL between write and rename leaves the hidden temporary file (no cleanup runs): readers skip it
    _io.save_snapshot(tmp_path / _io.snapshot_filename(0), step=0, weights={"W": torch.ones(2, 2)})
    (tmp_path / ".tmp-abc123").write_bytes(_io.encode_snapshot(step=1, weights={"W": torch.ones(2, 2)})[:40])
    assert [s.step for s in load_snapshots(tmp_path)] == [0]


def test_crash_before_rename_keeps_the_previous_record(tmp_path, monkeypatch):
    path = tmp_path / "spectra.jsonl"
    _io.rewrite_records(path, [{"step": 0}, {"step": 1}])
    monkeypatch.setattr(_io.os, "replace", _crash)
    with pytest.raises(Crash):
        _io.rewrite_records(path, [{"step": 0}])
    monkeypatch.undo()
    assert read_records(path) == [{"step": 0}, {"step": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spectra.jsonl"]


@pytest.mark.parametrize("cut", [1, 5, -2])
def test_truncated_last_line_is_reported_not_parsed(tmp_path, cut):
    path = tmp_path / "spectra.jsonl"
    _io.append_record(path, {"step": 0, "outliers": 1})
    _io.append_record(path, {"step": 1, "outliers": 2})
    data = path.read_bytes()
    last_start = data.rindex(b"\n", 0, len(data) - 1) + 1
    path.write_bytes(data[: last_start + (cut if cut > 0 else len(data) - last_start + cut)])
    with pytest.raises(ValueError, match=r"spectra.jsonl: line 2 is truncated"):
        read_records(path)
    assert read_records(path, drop_truncated=True) == [{"step": 0, "outliers": 1}]


def test_corrupt_middle_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "spectra.jsonl"
    path.write_text('{"step": 0}\n{"step": 1\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_records(path)


def test_crash_mid_append_during_training_is_repaired_on_resume(tmp_path, monkeypatch):
    """The process dies while appending the record line of step 4: half a line stays on disk. The file is
    reported as truncated, and resuming from the checkpoint of step 3 gives a clean record of every step once."""
    real_write = os.write

    def dying_write(fd, data):
        if bytes(data).startswith(b'{"step":4,'):
            real_write(fd, bytes(data)[: len(data) // 2])  # half of the line reaches the disk, then the crash
            raise Crash
        return real_write(fd, data)

    monkeypatch.setattr(_io.os, "write", dying_write)
    with pytest.raises(Crash):
        fit_with_record(tmp_path, 6)
    monkeypatch.undo()
    record = tmp_path / "record" / "spectra.jsonl"
    with pytest.raises(ValueError, match="line 5 is truncated"):
        read_records(record)

    fit_with_record(tmp_path, 6, ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    assert record_steps(read_records(record)) == list(range(7))
    assert [s.step for s in load_snapshots(tmp_path / "snapshots")] == list(range(7))
