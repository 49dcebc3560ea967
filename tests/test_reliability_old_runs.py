"""Run directories written before the staged engine (schema-1 records, the old monitor's checkpoint state) still
render in ``spikelearn report`` and still resume.

``tests/data/run_v1`` is a 3-step ``two_step_reused`` run at N = d = 32 (n = 64) written by commit 105c9ff: its
``spectra.jsonl``, ``config.yaml`` and ``hparams.yaml`` (figures, events, snapshots and the checkpoint left out: no
checkpoint is kept in git). The old monitor's checkpoint state is today's minus the spike-identity keys and plus
``W0_products`` (:math:`W_0^\top Q_a`, which the comparator no longer needs; the tracker keys ``warm``, ``products``,
``products_step``, ``last_step``, ``last_count`` are unchanged), so the resume test writes a checkpoint today, strips
those keys and adds that one, as 105c9ff wrote it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from spikelearn.callbacks import read_records
from spikelearn.cli import main as cli_main
from spikelearn.report import main as report_main

OLD_RUN = Path(__file__).parent / "data" / "run_v1"
SMALL = ["--config", "two_step_reused", "--model.width", "32", "--data.input_dim", "32", "--data.batch_size", "64",
         "--trainer.enable_progress_bar", "false"]


def test_the_old_record_has_no_schema_and_reads_back():
    records = read_records(OLD_RUN / "spectra.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2, 3] and all("schema" not in r for r in records)


def test_an_old_run_directory_renders_in_the_report(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    report_main([str(run)])
    page = (run / "report.html").read_text()
    assert "spectrum" in page.lower() and page.count("<img") >= 1


def _fit(root: Path, *extra: str) -> list[dict]:
    torch.set_num_threads(1)
    cli_main(["fit", *SMALL, "--trainer.default_root_dir", str(root), *extra])
    return read_records(next(root.rglob("spectra.jsonl")))


LEARNED_DIRECTIONS = ("comparator_basis_size", "comparator_strengths", "predicted_locations",
                      "outlier_predicted_locations", "comparator_coverage", "matvecs")
IDENTITY_KEYS = ("outlier_left", "outlier_right", "outlier_ids", "outlier_births", "next_outlier_id", "identity_step")


def _as_before_identities(ckpt: Path) -> Path:
    """The checkpoint with its monitor's tracker states as commit 105c9ff wrote them (no spike-identity keys, and
    the ``W_0^T Q_a`` products it kept: any tensor of their shape, the engine ignores them now)."""
    state = torch.load(ckpt, weights_only=True)
    stripped = 0
    for key, callback in state["callbacks"].items():
        if key.startswith("SpectrumMonitor"):
            for tracker in callback["trackers"].values():
                stripped += sum(tracker.pop(k, None) is not None for k in IDENTITY_KEYS)
                if tracker.get("products") is not None:
                    tracker["W0_products"] = torch.zeros_like(tracker["products"])
    assert stripped, "the monitor's state has no identity keys to strip"
    out = ckpt.parent / "old_format.ckpt"
    torch.save(state, out)
    return out


@pytest.mark.slow
def test_an_old_checkpoint_resumes_to_the_records_of_an_uninterrupted_run(tmp_path):
    # a tracker state without spike identities (as before they existed) is loaded as it was written: the step-5
    # record of the resumed run equals the one of a run that never stopped, every key and number but the timing, the
    # birth steps (ids start at the first resumed analysis, whose step becomes their birth) and what the comparator
    # builds on the previous analysis's outliers, which an old checkpoint does not hold: its learned directions, so
    # its basis, strengths, locations, coverage and the products they cost (its count is compared)
    _fit(tmp_path / "first", "--trainer.max_steps", "3")
    ckpt = _as_before_identities(next((tmp_path / "first").rglob("last.ckpt")))
    resumed = _fit(tmp_path / "resumed", "--trainer.max_steps", "5", "--ckpt_path", str(ckpt))
    straight = _fit(tmp_path / "straight", "--trainer.max_steps", "5")

    def last(records: list[dict]) -> dict:
        record = dict(records[-1])
        for key in ("analysis_seconds", "outlier_births", *LEARNED_DIRECTIONS):
            record.pop(key)
        return json.loads(json.dumps(record))

    assert resumed[-1]["step"] == straight[-1]["step"] == 5
    assert last(resumed) == last(straight)
