"""Bad files are clear errors: a damaged or lying snapshot, a record line that is not UTF-8 / too deep / too long,
each a ValueError naming the file (and line) and what is wrong; and files get the user's umask mode."""

from __future__ import annotations

import json
import os
import stat
import struct

import pytest
import torch

from spikelearn.callbacks import _io, load_snapshot, load_snapshots, read_records


def _parts(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _write(path, header, body):
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


@pytest.fixture
def snapshot(tmp_path):
    path = tmp_path / _io.snapshot_filename(1)
    _io.save_snapshot(path, step=1, weights={"W": torch.eye(3)}, eta=0.5)
    return path


def test_truncated_snapshot_names_file_and_tensor(snapshot):
    snapshot.write_bytes(snapshot.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"step_00000001.safetensors: tensor 'weight/W' has data_offsets \[0, 36\] "
                                         r"outside the file's 31 data bytes"):
        load_snapshot(snapshot)


def test_lying_data_offsets(snapshot):
    header, body = _parts(snapshot)
    header["weight/W"]["data_offsets"] = [0, 10**6]
    _write(snapshot, header, body)
    with pytest.raises(ValueError, match=r"step_00000001.safetensors: tensor 'weight/W' has data_offsets"):
        load_snapshot(snapshot)


def test_absurd_shape_is_refused_before_allocating(snapshot):
    header, body = _parts(snapshot)
    header["weight/W"]["shape"] = [10**9, 10**9]
    _write(snapshot, header, body)
    with pytest.raises(ValueError, match=r"tensor 'weight/W' of shape \[1000000000, 1000000000\] and dtype F32 needs "
                                         r"4000000000000000000 bytes but its data_offsets \[0, 36\] span 36"):
        load_snapshot(snapshot)


def test_non_utf8_header(snapshot):
    data = snapshot.read_bytes()
    snapshot.write_bytes(data.replace(b'"format"', b'"f\xff\xfet"', 1))
    with pytest.raises(ValueError, match=r"step_00000001.safetensors: the safetensors header is not UTF-8"):
        load_snapshot(snapshot)


@pytest.mark.parametrize(("change", "message"), [
    ({"step": None}, r"metadata `step` must be an integer >= 0, got None"),
    ({"step": "abc"}, r"metadata `step` must be an integer >= 0, got 'abc'"),
    ({"step": "-1"}, r"metadata `step` must be an integer >= 0, got '-1'"),
    ({"eta": "{{{"}, r"metadata `eta` must be a number or null, got '\{\{\{'"),
    ({"step": "5"}, r"the file name says step 1 but its metadata says step 5"),
])
def test_bad_metadata(snapshot, change, message):
    header, body = _parts(snapshot)
    for key, value in change.items():
        if value is None:
            header["__metadata__"].pop(key)
        else:
            header["__metadata__"][key] = value
    _write(snapshot, header, body)
    with pytest.raises(ValueError, match=r"step_00000001.safetensors: " + message):
        load_snapshot(snapshot)
    with pytest.raises(ValueError, match=message):
        load_snapshots(snapshot.parent)  # a film never holds one step twice


def test_infinite_eta_still_loads(tmp_path):
    path = tmp_path / _io.snapshot_filename(2)
    _io.save_snapshot(path, step=2, weights={"W": torch.eye(2)}, eta=float("inf"))
    assert load_snapshot(path).eta == float("inf")


@pytest.mark.parametrize(("line", "message"), [
    (b'{"step": 1, "x": "\xff\xfe"}', r"line 2 is not UTF-8 text"),
    (b"[" * 100_000, r"line 2 is nested too deeply"),
    (b'{"step": ' + b"9" * 5000 + b"}", r"line 2 is not a readable record \(Exceeds the limit"),
])
def test_bad_record_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "spectra.jsonl"
    path.write_bytes(b'{"step": 0}\n' + line + b"\n")
    with pytest.raises(ValueError, match=r"spectra.jsonl: " + message):
        read_records(path)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def test_snapshot_record_and_rewritten_record_get_the_umask_mode(tmp_path, umask_027):
    snap = tmp_path / _io.snapshot_filename(0)
    _io.save_snapshot(snap, step=0, weights={"W": torch.eye(2)})
    record = tmp_path / "spectra.jsonl"
    _io.append_record(record, {"step": 0})
    rewritten = tmp_path / "rewritten.jsonl"
    _io.rewrite_records(rewritten, [{"step": 0}])
    for path in (snap, record, rewritten):
        assert stat.S_IMODE(path.stat().st_mode) == umask_027, path.name
