"""The record's one table (spikelearn.functional.record): keys, TensorBoard tags, charts and HPARAMS metrics."""

from __future__ import annotations

import json

import pytest
import torch

from spikelearn.callbacks.summary import custom_scalars_layout, final_metrics
from spikelearn.functional import record as rec
from spikelearn.functional.engine import analyze
from spikelearn.functional.inputs import EngineConfig, TheoryInputs


def _analysis():
    """Step 1 of a planted trajectory (so the order-k fit of the update is there too)."""
    g = torch.Generator().manual_seed(0)
    N, d = 200, 150
    a = torch.randn(N, generator=g, dtype=torch.float64) / N**0.5
    B = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64))[0]
    W0 = torch.randn(N, d, generator=g, dtype=torch.float64) / d**0.5
    theory, config = TheoryInputs(a=a, B=B, alphas=[0.3]), EngineConfig(k=8)
    _, state = analyze(W0, theory, config, step=0)
    return analyze(W0 + 4.0 * torch.outer(a / a.norm(), B[:, 0]), theory, config, state, step=1)[0]


def test_all_unique():
    assert len(rec.__all__) == len(set(rec.__all__))


def test_field_keys_are_unique():
    keys = [f.key for f in rec.FIELDS]
    assert len(keys) == len(set(keys))


def test_the_record_has_every_engine_field_in_table_order():
    record = _analysis().record(step=0, param="W")
    assert list(record) == [f.key for f in rec.FIELDS if f.value is not None or f.key in ("step", "param")]


def test_the_record_is_plain_json_with_the_schema():
    record = _analysis().record()
    assert json.loads(json.dumps(record, allow_nan=False)) == record and record["schema"] == rec.SCHEMA


def test_every_tagged_field_of_a_record_is_a_scalar():
    record = _analysis().record(step=0, param="W", eta=1.0, analysis_seconds=0.1)
    tags = rec.scalars(record, top_k=100)
    for field in rec.FIELDS:
        if field.tag is not None and record.get(field.key) not in (None, []):
            prefix = "spectrum/W/" + field.tag.split("{")[0]
            assert any(t.startswith(prefix) for t in tags), field.key


def test_every_chart_pattern_matches_a_logged_tag():
    import re

    record = _analysis().record(step=0, param="W")
    tags = rec.scalars(record)
    for title, lines in rec.charts("W").items():
        for line in lines:
            assert any(re.match(line, t) for t in tags), (title, line)


def test_the_layout_and_the_final_metrics_come_from_the_table():
    layout = custom_scalars_layout(["W"], readout=False)["spectrum W"]
    assert {title: lines for title, (_, lines) in layout.items()} == rec.charts("W")
    record = _analysis().record(step=2, param="W")
    assert final_metrics([record]) == rec.final_scalars(record) and "final/W/captured_energy/beta_0" in rec.final_scalars(record)


def test_run_fields_must_be_known():
    with pytest.raises(ValueError, match="run fields"):
        _analysis().record(steps=3)


@pytest.mark.parametrize("value, expected", [(1, 1.0), (float("inf"), None), (True, None), ("2", None), (None, None)])
def test_number(value, expected):
    assert rec.number(value) == expected
