"""Before/after: the staged engine writes the records and TensorBoard tags the engine of commit 105c9ff wrote.

``tests/data/golden/`` was written by ``tests/golden_records.py`` with that engine (one 19-keyword function). The
same runs today must give every key and number of then (``analysis_seconds`` aside: it is a timing) plus the keys
added since (``schema``, ``edge_error``, the regularity stage's keys), and the same scalar tags plus the added fields' tags. Numbers are compared
exactly: the runs are deterministic on one machine (the resume tests rely on the same bit-exactness), and the
redesign moved code without changing one floating-point operation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import golden_records

GOLDEN = Path(__file__).parent / "data" / "golden"
ADDED_KEYS = {"schema", "edge_error",  # keys the records gained after the golden files were written
              "outlier_candidates", "count_status", "edge_regular", "tail_alpha", "tail_k", "edge_residual",
              "outlier_localisation"}  # issue 19's regularity stage
ADDED_TAGS = {"edge_error", "edge_regular", "tail_alpha", "edge_residual"}
TIMING = set(golden_records.TIMING_FIELDS)


def _golden(name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (GOLDEN / f"{name}.jsonl").read_text().splitlines()]


def _comparable(records: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if k not in TIMING | ADDED_KEYS} for r in records]


def _added_tags(tags: list[str]) -> list[str]:
    return sorted(t for t in tags if t.rsplit("/", 1)[-1] not in ADDED_TAGS)


def test_tracker_records_equal_the_golden_ones():
    assert _comparable(golden_records.tracker_case()) == _comparable(_golden("tracker"))


@pytest.mark.slow
@pytest.mark.parametrize("name", [*golden_records.CASES, "demo"])
def test_run_records_and_tags_equal_the_golden_ones(name, tmp_path):
    records, tags = golden_records.demo_case(tmp_path) if name == "demo" else golden_records.run_case(name, tmp_path)
    assert (_comparable(records), _added_tags(tags)) == (
        _comparable(_golden(name)), json.loads((GOLDEN / f"{name}.tags.json").read_text()))


@pytest.mark.slow
def test_records_carry_the_schema_version(tmp_path):
    from spikelearn.functional.record import SCHEMA

    records, _ = golden_records.run_case("two_step_reused", tmp_path)
    assert {r["schema"] for r in records} == {SCHEMA}
