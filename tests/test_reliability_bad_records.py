"""Damaged record and snapshot files are `ValueError`s naming the file (issue 18, rows 11 and 12): a record `step`
that is a string or NaN, met by `spikelearn report` or by a resume, and a snapshot `step` of 5000 digits."""

from __future__ import annotations

import json

import pytest
import torch
from reliability_helpers import fit_with_record
from safetensors.torch import save_file

from spikelearn.callbacks import load_snapshot, read_records
from spikelearn.callbacks._io import SNAPSHOT_FORMAT, append_record


@pytest.mark.parametrize("step", ["10", float("nan"), 2.5, -1, True])
def test_a_record_step_that_is_not_a_count_names_the_file_and_line(tmp_path, step):
    path = tmp_path / "spectra.jsonl"
    append_record(path, {"step": 0, "outliers": 1})
    with open(path, "a") as handle:
        handle.write(json.dumps({"step": step, "outliers": 1}) + "\n")  # json writes NaN as NaN
    with pytest.raises(ValueError, match=rf"{path}: line 2 has `step` = .*, expected an integer >= 0"):
        read_records(path)


def test_a_resume_over_a_record_whose_step_is_a_string_names_the_file(tmp_path):
    fit_with_record(tmp_path, 2)
    record = tmp_path / "record" / "spectra.jsonl"
    lines = record.read_text().splitlines()
    lines[1] = lines[1].replace('"step":1', '"step":"1"', 1)
    record.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"spectra.jsonl: line 2 has `step` = '1'"):
        fit_with_record(tmp_path, 3, ckpt_path=tmp_path / "checkpoints" / "last.ckpt")


def test_a_snapshot_step_of_5000_digits_names_the_file(tmp_path):
    path = tmp_path / "odd.safetensors"
    save_file({"weight/W": torch.eye(2)}, str(path),
              metadata={"format": SNAPSHOT_FORMAT, "step": "1" * 5000, "eta": "null", "params": '["W"]'})
    with pytest.raises(ValueError, match=rf"{path}: metadata `step` must be an integer"):
        load_snapshot(path)
