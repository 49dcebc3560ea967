"""`spikelearn report` on a hostile or huge run directory (issue 18, rows 1, 11, 12, 13): the page reads only regular
files inside the run directory, never follows a link out of it, writes itself by create-new-then-rename, names the
file of a bad record in one line, and stays bounded however large the run."""

from __future__ import annotations

import base64
import errno
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from spikelearn.callbacks._io import append_record
from spikelearn.report import MAX_FILM_FRAMES, MAX_TEXT, build_report, film_frames, main

SECRET = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlegitimate-key user@host"


def _record(step: int, **fields) -> dict:
    return {"step": step, "param": "W", "N": 16, "d": 16, "outliers": 1, "singular_values": [3.0, 1.5, 1.2],
            "bulk_edge": 1.6, "cut": 1.7, **fields}


def _run_dir(root: Path, steps: int = 3, **fields) -> Path:
    run = root / "run"
    run.mkdir(parents=True)
    for t in range(steps):
        append_record(run / "spectra.jsonl", _record(t, **fields))
    return run


def _secret_file(root: Path) -> Path:
    secret = root / "outside" / "authorized_keys"
    secret.parent.mkdir()
    secret.write_text(SECRET + "\n")
    return secret


# ---------------------------------------------------------------------------------------------- row 1: links
def test_a_symlinked_report_html_is_replaced_not_written_through(tmp_path):
    run, secret = _run_dir(tmp_path), _secret_file(tmp_path)
    (run / "report.html").symlink_to(secret)
    page = build_report(run)
    assert secret.read_text() == SECRET + "\n", "the page was written through the link into the file it names"
    assert not page.is_symlink() and page.read_text().startswith("<!DOCTYPE html>")


def test_a_symlinked_config_is_not_printed(tmp_path):
    run, secret = _run_dir(tmp_path), _secret_file(tmp_path)
    (run / "config.yaml").symlink_to(secret)
    assert "legitimate-key" not in build_report(run).read_text()


def test_a_symlinked_figure_is_not_embedded(tmp_path):
    run, secret = _run_dir(tmp_path), _secret_file(tmp_path)
    (run / "figures").mkdir()
    for t in (1, 2):
        (run / "figures" / f"spectrum_W_step{t}.png").symlink_to(secret)
    page = build_report(run).read_text()
    assert base64.b64encode(secret.read_bytes()).decode() not in page
    assert "legitimate-key" not in page


def test_a_symlinked_figures_directory_is_not_read(tmp_path):
    run, secret = _run_dir(tmp_path), _secret_file(tmp_path)
    for t in (1, 2):
        (secret.parent / f"spectrum_W_step{t}.png").write_bytes(secret.read_bytes())
    (run / "figures").symlink_to(secret.parent, target_is_directory=True)
    assert base64.b64encode(secret.read_bytes()).decode() not in build_report(run).read_text()


def test_a_fifo_named_like_a_figure_does_not_hang_the_report(tmp_path):
    run = _run_dir(tmp_path)
    (run / "figures").mkdir()
    for t in (1, 2):
        os.mkfifo(run / "figures" / f"spectrum_W_step{t}.png")
    code = f"from spikelearn.report import build_report; build_report({str(run)!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_figure_linked_to_dev_zero_is_not_read(tmp_path):
    run = _run_dir(tmp_path)
    (run / "figures").mkdir()
    for t in (1, 2):
        (run / "figures" / f"spectrum_W_step{t}.png").symlink_to("/dev/zero")
    frames = film_frames(run, [_record(t) for t in range(3)], "W")
    assert [f.step for f in frames] == [0, 1, 2]  # drawn from the records instead


def test_a_symlinked_record_file_is_refused_by_name(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "spectra.jsonl").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match=r"spectra.jsonl is not a regular file"):
        build_report(run)


# ---------------------------------------------------------------------------------------------- row 11: one line
def test_report_out_in_a_read_only_directory_is_one_line(tmp_path, monkeypatch, capsys):
    run = _run_dir(tmp_path)
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    real = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):  # root writes through chmod 0o500: refuse as the kernel would a user
        if dir is not None and Path(dir) == read_only:
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(SystemExit) as exit_info:
        main([str(run), "--out", str(read_only / "report.html")])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "cannot write the report" in last and "read_only" in last and "Permission denied" in last


def test_a_record_whose_param_is_a_list_names_the_file(tmp_path):
    run = _run_dir(tmp_path, param=["W", "V"])
    with pytest.raises(ValueError, match=r"spectra.jsonl: record 1 has `param` = \['W', 'V'\], expected a string"):
        build_report(run)


def test_a_record_field_of_the_wrong_type_names_the_file(tmp_path):
    run = _run_dir(tmp_path, singular_values=3.0)
    with pytest.raises(ValueError, match=r"spectra.jsonl: record 1 has `singular_values` = 3.0, expected a list"):
        build_report(run)


def test_a_record_with_a_lone_surrogate_gives_a_page(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "spectra.jsonl").write_text('{"step": 0, "param": "W\\ud800", "outliers": 0, "theory_note": "x\\udfff"}\n')
    assert build_report(run).read_bytes().decode("utf-8").startswith("<!DOCTYPE html>")


def test_a_directory_named_like_a_figure_is_skipped(tmp_path):
    run = _run_dir(tmp_path)
    for t in (1, 2):
        (run / "figures" / f"spectrum_W_step{t}.png").mkdir(parents=True)
    assert build_report(run).is_file()


# ---------------------------------------------------------------------------------------------- row 12: names
def test_a_non_utf8_config_is_shown_with_its_name(tmp_path):
    run = _run_dir(tmp_path)
    (run / "config.yaml").write_bytes(b"model:\n  width: 16\n  note: \xff\xfe\n")
    page = build_report(run).read_text()
    assert f"{run / 'config.yaml'} is not UTF-8 text" in page and "width: 16" in page


# ---------------------------------------------------------------------------------------------- row 13: bounds
def test_a_megabyte_param_string_is_cut_and_quick(tmp_path):
    run = _run_dir(tmp_path, param="W" * 2**20)
    start = time.monotonic()
    page = build_report(run)
    assert time.monotonic() - start < 60
    assert page.stat().st_size < 2**20
    assert "W" * MAX_TEXT not in page.read_text()


def test_the_film_of_many_saved_figures_is_bounded(tmp_path):
    run = _run_dir(tmp_path)
    (run / "figures").mkdir()
    for t in range(600):
        (run / "figures" / f"spectrum_W_step{t}.png").write_bytes(b"\x89PNG fake")
    frames = film_frames(run, [], "W")
    steps = [f.step for f in frames]
    assert 2 <= len(frames) <= MAX_FILM_FRAMES and steps[0] == 0 and steps[-1] == 599 and steps == sorted(steps)


@pytest.mark.slow
def test_a_report_of_600_records_draws_a_bounded_film(tmp_path):
    run = _run_dir(tmp_path, steps=600)
    start = time.monotonic()
    page = build_report(run).read_text()
    assert page.count('class="frame"') <= MAX_FILM_FRAMES
    assert page.count("<tr>") >= 600  # every step stays in the table
    assert time.monotonic() - start < 100
