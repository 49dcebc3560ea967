"""The README's main job (`make demo` runs `python scripts/demo.py`), at a small size, as a subprocess."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spikelearn.callbacks import read_records

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_prints_the_table_and_writes_what_it_says(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "scripts/demo.py", "--size", "384", "--out-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stdout = proc.stdout
    assert "outliers tot/defl" in stdout and "predicted asym/finite-N" in stdout
    assert "law after step 2: 1 + ⌊α₂/(½ − α₁)⌋ = 3" in stdout
    assert "monitor overhead per analysed step" in stdout and f"tensorboard --logdir {out}" in stdout
    assert "Warning" not in stdout and "Tip" not in proc.stderr  # nothing noisy
    with open(out / "demo_table.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["batches"], r["step"]) for r in rows] == [(b, str(t)) for b in ("reused", "independent") for t in (0, 1, 2)]
    assert all(r["predicted_outliers"] == "3" for r in rows if r["step"] == "2")
    for batches in ("reused", "independent"):
        records = read_records(out / batches / "spectra.jsonl")
        assert [r["step"] for r in records] == [0, 1, 2]
        assert (out / batches / "figures" / "spectrum_W_step000002.png").exists()
        assert any(p.name.startswith("events.out.tfevents") for p in (out / batches).iterdir())
        assert str(out / batches / "spectra.jsonl") in stdout


def test_demo_rejects_mismatched_schedules():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import demo
    finally:
        sys.path.remove(str(REPO / "scripts"))
    with pytest.raises(SystemExit):
        demo.parse_args(["--step-c", "1", "2", "--step-alpha", "0.3"])


def test_demo_tensorboard_has_the_layout_and_the_real_hparams_metrics(tmp_path):
    """The demo's TensorBoard looks like a `spikelearn fit` run's (issue 20): a CUSTOM SCALARS layout, HPARAMS with
    the final counts as metrics, and no placeholder `hp_metric`; read back with TensorBoard's own EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.plugins.hparams import plugin_data_pb2

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import demo
    finally:
        sys.path.remove(str(REPO / "scripts"))
    demo.main(["--size", "32", "--batches", "reused", "--out-dir", str(tmp_path), "--no-progress"])
    events = EventAccumulator(str(tmp_path / "reused"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert "hp_metric" not in scalars
    assert {"final/W/outliers", "final/W/predicted_outliers", "final/W/outliers_deflated"} <= scalars
    (layout_event,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(layout_event.tensor_proto.string_val[0])
    charts = {chart.title for category in layout.category for chart in category.chart}
    assert "outlier count: measured vs predicted" in charts
    hparams = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    metrics = {m.name.tag for m in experiment.metric_infos}
    assert "final/W/outliers" in metrics and "hp_metric" not in metrics
    assert {"model.width", "model.seed", "data.seed", "data.batches"} <= {h.name for h in experiment.hparam_infos}
