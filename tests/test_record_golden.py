"""Before/after: the staged engine writes the records and TensorBoard tags the engine of commit 105c9ff wrote.

``tests/data/golden/`` was written by ``tests/golden_records.py`` with that engine (one 19-keyword function). The
same runs today must give every key and number of then (``analysis_seconds`` aside: it is a timing) plus the keys
added since (``schema``, ``edge_error``, the regularity stage's keys, …), and the same scalar tags plus the added
fields' tags (the demo's also trade Lightning's placeholder ``hp_metric`` for RunSummary's ``final/`` HPARAMS metrics,
issue 20). Numbers are compared
exactly: the runs are deterministic on one machine (the resume tests rely on the same bit-exactness), and the
redesign moved code without changing one floating-point operation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import golden_records

GOLDEN = Path(__file__).parent / "data" / "golden"
ADDED_KEYS = {"schema", "edge_error", "outlier_ids", "outlier_births", "ended_outliers",  # added since the golden files
              "comparator_coverage", "comparator_strengths", "comparator_critical_strength", "comparator_basis_size",
              "comparator_bulk",  # issue 17's comparator
              "outlier_candidates", "count_status", "edge_regular", "tail_alpha", "tail_k", "edge_residual",
              "outlier_localisation"}  # issue 19's regularity stage
ADDED_TAGS = {"edge_error", "comparator_coverage", "edge_regular", "tail_alpha", "edge_residual",
              "comparator_critical_strength"}
# the finite-N comparator was replaced (issue 17: BGN against the measured bulk's D-transform, a basis that follows
# what was learned); its values are checked against independent truths in test_comparator.py and
# test_d_transform.py, so here only its keys are compared, the notes without its sentences, and its extra products
COMPARATOR = ("predicted_outliers_finite_n", "predicted_locations", "outlier_predicted_locations")
# past two steps the asymptotic fields hold the stated step-t extension (they were null), said so in theory_note
EXTENDED = ("predicted_outliers", "predicted_outliers_deflated", "theory_note")
ADDED_TAG_PREFIXES = ("outlier_id/",)  # one tag per spike id
# tags other changes added: the readout's standard error (issue 21), the final asymptotic count past two steps (the
# stated extension)
ADDED_RUN_TAGS = {"readout/test_mse_stderr", "final/W/predicted_outliers"}
# the demo's TensorBoard since issue 20: RunSummary's real HPARAMS metrics (final/...) instead of Lightning's
# placeholder hp_metric, as `spikelearn fit` runs have had all along
DEMO_REMOVED_TAGS = {"hp_metric"}
DEMO_ADDED_PREFIX = "final/"
TIMING = set(golden_records.TIMING_FIELDS)


def _golden(name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (GOLDEN / f"{name}.jsonl").read_text().splitlines()]


def _comparable(records: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if k not in TIMING | ADDED_KEYS} for r in records]


def _other_notes(note: object) -> object:
    """The note without the comparator's sentences (``None`` when nothing else is left)."""
    if not isinstance(note, str):
        return note
    kept = [part for part in note.split("; ") if "finite-N" not in part]
    return "; ".join(kept) or None


def _without_withheld(new: list[dict[str, object]], old: list[dict[str, object]]) -> tuple[list, list]:
    """The comparator's values replaced by their presence, its products checked as added ones only, and the fields
    of the step-t extension dropped where the new record says it holds the extension."""
    keep_new, keep_old = [], []
    for n, o in zip(new, old):
        note = str(n.get("theory_note"))
        dropped = set()
        if o.get("predicted_outliers") is None and "extension of the two-step law" in note:
            dropped |= set(EXTENDED)
        pair = []
        for r in (n, o):
            r = {k: (k in r) if k in COMPARATOR else v for k, v in r.items() if k not in dropped}
            if "theory_note" in r:
                r["theory_note"] = _other_notes(r["theory_note"])
            pair.append(r)
        if "matvecs" in pair[0] and "matvecs" in pair[1]:
            assert pair[0]["matvecs"] >= pair[1]["matvecs"], (n["step"], "the comparator only adds products")
            pair[0]["matvecs"] = pair[1]["matvecs"]
        keep_new.append(pair[0])
        keep_old.append(pair[1])
    return keep_new, keep_old


def _added(tag: str) -> bool:
    """A tag that changes made after the golden files added (the golden tags must all still be there)."""
    inner = tag.split("/", 2)[-1]  # past spectrum/<param>/
    return tag.rsplit("/", 1)[-1] in ADDED_TAGS or inner.startswith(ADDED_TAG_PREFIXES) or tag in ADDED_RUN_TAGS


def test_tracker_records_equal_the_golden_ones():
    new, old = _without_withheld(_comparable(golden_records.tracker_case()), _comparable(_golden("tracker")))
    assert new == old


@pytest.mark.slow
@pytest.mark.parametrize("name", [*golden_records.CASES, "demo"])
def test_run_records_and_tags_equal_the_golden_ones(name, tmp_path):
    records, tags = golden_records.demo_case(tmp_path) if name == "demo" else golden_records.run_case(name, tmp_path)
    new, old = _without_withheld(_comparable(records), _comparable(_golden(name)))
    old_tags = set(json.loads((GOLDEN / f"{name}.tags.json").read_text()))
    if name == "demo":
        assert any(t.startswith(DEMO_ADDED_PREFIX) for t in tags)
        tags = [t for t in tags if not t.startswith(DEMO_ADDED_PREFIX)]
        old_tags -= DEMO_REMOVED_TAGS
    assert new == old
    assert old_tags <= set(tags) and all(_added(t) for t in set(tags) - old_tags), sorted(set(tags) ^ old_tags)


@pytest.mark.slow
def test_records_carry_the_schema_version(tmp_path):
    from spikelearn.functional.record import SCHEMA

    records, _ = golden_records.run_case("two_step_reused", tmp_path)
    assert {r["schema"] for r in records} == {SCHEMA}
