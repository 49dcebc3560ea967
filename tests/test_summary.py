"""RunSummary and StepProgressBar: the table at the end of a fit, the custom-scalars layout, HPARAMS metrics."""

from __future__ import annotations

import io
import re
from pathlib import Path

import lightning as L
import pytest
import yaml
from lightning.pytorch.loggers import TensorBoardLogger

from spikelearn.callbacks import (
    RunSummary,
    SpectrumMonitor,
    StepProgressBar,
    custom_scalars_layout,
    final_metrics,
    summary_table,
)
from spikelearn.callbacks.progress import step_metrics
from spikelearn.callbacks.summary import print_table, summary_cells
from spikelearn.data import GaussianDataModule
from spikelearn.module import TwoLayerModule

SIZE = 96


def _fit(tmp_path: Path, callbacks: list, readout: bool = True, progress: bool = False, steps: int = 2):
    module = TwoLayerModule(width=SIZE, input_dim=SIZE, step_c=(1.0, 2.0), step_alpha=(0.35, 0.4), readout=readout)
    data = GaussianDataModule(input_dim=SIZE, batch_size=SIZE, batches="reused", test_size=SIZE, readout_size=SIZE)
    logger = TensorBoardLogger(tmp_path, name="run", version=0, default_hp_metric=False)
    trainer = L.Trainer(
        max_steps=steps, max_epochs=-1, accelerator="cpu", devices=1, logger=logger, callbacks=callbacks,
        enable_progress_bar=progress, enable_model_summary=False, enable_checkpointing=False,
        use_distributed_sampler=False, num_sanity_val_steps=0, log_every_n_steps=1,
    )
    trainer.fit(module, data)
    return trainer, module, Path(logger.log_dir)


def _plugin_values(log_dir: Path) -> dict[str, list]:
    """Summary values of the event file grouped by plugin name (custom_scalars, hparams, scalars)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found: dict[str, list] = {}
    for path in log_dir.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                found.setdefault(value.metadata.plugin_data.plugin_name or "scalars", []).append(value)
    return found


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("summary")
    summary = RunSummary()
    monitor = SpectrumMonitor()
    trainer, module, log_dir = _fit(tmp_path, [monitor, summary])
    return summary, monitor, module, log_dir


def test_layout_puts_measured_and_predicted_counts_on_one_chart(finished_run):
    from tensorboard.plugins.custom_scalar import layout_pb2

    *_, log_dir = finished_run
    values = _plugin_values(log_dir)
    assert "custom_scalars" in values, "no custom-scalars layout in the event file"
    layout = layout_pb2.Layout()
    layout.ParseFromString(values["custom_scalars"][0].tensor.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    counts = charts["outlier count: measured vs predicted"]
    logged = {v.tag for v in values["scalars"]}
    for tag in ("spectrum/W/outliers", "spectrum/W/predicted_outliers", "spectrum/W/predicted_outliers_finite_n"):
        assert tag in logged and any(re.search(pattern, tag) for pattern in counts), tag
    edges = charts["bulk edges and the outlier cut"]
    for field in ("bulk_edge", "bulk_edge_theory", "bulk_edge_mp", "cut", "top_bulk_value"):
        tag = f"spectrum/W/{field}"
        assert tag not in logged or any(re.search(p, tag) for p in edges), tag  # every logged edge is on the chart
    assert any(re.search(p, "spectrum/W/bulk_edge") for p in edges)
    energy = charts["captured energy vs random baseline"]
    assert all(any(re.search(p, t) for p in energy) for t in ("spectrum/W/alignment/beta_0", "spectrum/W/alignment/baseline"))
    assert charts["readout MSE"] == [r"^readout/(train|test)_mse$"]


def test_hparams_hold_both_seeds_and_the_final_metrics(finished_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    summary, monitor, module, log_dir = finished_run
    last = monitor.history[-1]
    assert summary.metrics["final/W/outliers"] == last["outliers"]
    assert summary.metrics["final/W/predicted_outliers"] == last["predicted_outliers"]
    assert summary.metrics["final/W/captured_energy/beta_0"] == pytest.approx(last["captured_energy"][0])
    assert summary.metrics["final/readout_test_mse"] == pytest.approx(module.readout_metrics["readout/test_mse"])
    values = _plugin_values(log_dir)
    experiment = next(v for v in values["hparams"] if v.tag == "_hparams_/experiment")
    data = plugin_data_pb2.HParamsPluginData.FromString(experiment.metadata.plugin_data.content)
    names = {h.name for h in data.experiment.hparam_infos}
    metrics = {m.name.tag for m in data.experiment.metric_infos}
    assert {"model.seed", "data.seed", "model.width", "data.batches"} <= names
    assert not any(name.startswith(("model._", "data._")) for name in names)
    assert {"final/W/outliers", "final/readout_test_mse"} <= metrics and "hp_metric" not in metrics
    assert {v.tag for v in values["scalars"]} >= set(summary.metrics)  # HPARAMS reads the values from these scalars
    saved = yaml.safe_load((log_dir / "hparams.yaml").read_text())
    assert saved["model.seed"] == 0 and saved["data.seed"] == 0


def test_fit_ends_with_the_table_and_the_run_directory(tmp_path, capsys):
    _fit(tmp_path, [SpectrumMonitor(), RunSummary()], readout=False)
    out = capsys.readouterr().out
    assert "outliers tot/defl" in out and "predicted asym/finite-N" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s*[012]\s+", line)]
    assert [row[0] for row in rows] == ["0", "1", "2"]
    assert f"run directory: {tmp_path / 'run' / 'version_0'}" in out
    assert "spikelearn report" in out and "smoothing 0" in out


def test_summary_without_monitor_still_logs_and_prints(tmp_path, capsys):
    summary = RunSummary()
    _fit(tmp_path, [summary], readout=False, steps=1)
    assert summary.metrics == {}
    assert "run directory:" in capsys.readouterr().out


def test_table_tolerates_missing_fields_and_marks_marginal():
    records = [{"step": 0, "param": "W"}, {"step": 2, "param": "W", "eta": 42.25, "outliers": 4, "outliers_marginal": 1,
                                          "predicted_outliers": 3}]
    text = io.StringIO()
    print_table(summary_table(records), file=text)
    lines = text.getvalue().splitlines()
    assert any("4 / – (1 marginal)" in line and "3 / –" in line and "42.2" in line for line in lines)
    grouped = summary_table({"reused": records, "independent": records}, group="batches")
    assert [c.header for c in grouped.columns][:2] == ["batches", "step"]
    two = summary_table([{"step": 0, "param": "W1"}, {"step": 0, "param": "W2"}])
    assert [c.header for c in two.columns][0] == "param"


def test_layout_escapes_parameter_names():
    layout = custom_scalars_layout(["net.0.weight"], readout=False)
    pattern = layout["spectrum net.0.weight"]["outlier count: measured vs predicted"][1][0]
    assert re.search(pattern, "spectrum/net.0.weight/outliers") and not re.search(pattern, "spectrum/netX0Xweight/outliers")


def test_final_metrics_skip_missing_and_non_finite():
    metrics = final_metrics([{"param": "W", "outliers": 2, "captured_energy": [float("nan"), 0.4]}], {"readout/test_mse": None})
    assert metrics == {"final/W/outliers": 2.0, "final/W/captured_energy/beta_1": 0.4}


def test_progress_bar_counts_steps_with_eta_and_outliers(tmp_path):
    bar = StepProgressBar()
    monitor = SpectrumMonitor()
    trainer, module, _ = _fit(tmp_path, [monitor, bar, RunSummary(print_table=False)], readout=False, progress=True)
    assert bar.total_train_batches == 2
    assert bar._get_train_description(0) == "step"
    shown = step_metrics(trainer, module)
    assert shown["η_t"] == f"{module.eta(2):.3g}"
    assert shown["outliers"] == str(monitor.history[-1]["outliers"])
    assert "v_num" not in bar.get_metrics(trainer, module)
    task = bar.progress.tasks[bar.train_progress_bar_id]
    assert (task.completed, task.total) == (2, 2)


def test_run_summary_rejects_bad_top_k():
    with pytest.raises(ValueError, match="top_k"):
        RunSummary(top_k=-1)


def test_long_runs_print_first_steps_then_a_stride_ending_at_the_last():
    records = [{"step": t, "param": "W", "outliers": 1} for t in range(51)]
    headers, rows = summary_cells(records, max_rows=16)
    steps = [row[headers.index("step")] for row in rows]
    assert steps[:6] == ["0", "1", "2", "3", "4", "…"] and steps[-1] == "50" and len(steps) <= 17
    assert len(summary_cells(records)[1]) == 51  # the report page shows every record
