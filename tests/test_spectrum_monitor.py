"""SpectrumMonitor: TensorBoard events, the spectra.jsonl record, the engine's numbers, resume, any model, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from spikelearn.callbacks import RECORD_FILENAME, Cadence, SpectrumMonitor, WeightSnapshot, load_snapshots, read_records
from spikelearn.data import GaussianDataModule
from spikelearn.functional.activations import activation_coefficients
from spikelearn.functional.engine import analyze, reference_products
from spikelearn.functional.inputs import EngineConfig, EngineState, TheoryInputs
from spikelearn.functional.schedule import StepSchedule
from spikelearn.functional.theory import extended_outlier_count
from spikelearn.module import TwoLayerModule

REQUIRED = (
    "step", "eta", "param", "N", "d", "aspect_ratio", "singular_values", "bulk_edge", "bulk_edge_mp",
    "bulk_edge_theory", "top_bulk_value", "edge_scale", "margin", "cut", "outliers", "outliers_marginal",
    "outliers_deflated", "predicted_outliers", "predicted_outliers_finite_n", "predicted_locations",
    "outlier_values", "outlier_status", "outlier_gaps", "outlier_margins", "outlier_predicted_locations",
    "alignment", "captured_energy",
    "captured_energy_baseline", "left_alignment", "order_strengths", "order_alignment", "theory_note",
)
THEORY_FIELDS = (
    "outliers_deflated", "predicted_outliers", "predicted_outliers_deflated", "predicted_outliers_finite_n",
    "left_alignment", "order_strengths", "order_alignment", "eta",
)
SIZE = 200


def _setup(batches="reused", size=SIZE, steps_c=(1.0, 1.0), alphas=(0.3, 0.45)):
    module = TwoLayerModule(width=size, input_dim=size, step_c=steps_c, step_alpha=alphas)
    return module, GaussianDataModule(input_dim=size, batch_size=size, batches=batches, target="he1")


def _trainer(callbacks, max_steps, logger=False, root=None, **kwargs):
    return L.Trainer(
        max_steps=max_steps, max_epochs=-1, accelerator="cpu", devices=1, logger=logger, callbacks=callbacks,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=kwargs.pop("ckpt", False),
        default_root_dir=root, use_distributed_sampler=False, num_sanity_val_steps=0, **kwargs,
    )


def _events(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_short_fit_logs_scalars_histograms_figure_and_record(tmp_path):
    module, data = _setup()
    monitor = SpectrumMonitor(figures=Cadence(first_k=1, every_n_steps=3))
    logger = TensorBoardLogger(tmp_path, name="run", version=0)
    _trainer([monitor], 3, logger=logger).fit(module, data)

    # the record: one valid line per analysed step, the same numbers as `history`
    record_path = Path(logger.log_dir) / RECORD_FILENAME
    records = read_records(record_path)
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    for r in records:
        assert set(REQUIRED) <= set(r), set(REQUIRED) - set(r)
    assert records == json.loads(json.dumps(monitor.history))
    assert records[0]["eta"] is None and records[2]["eta"] == pytest.approx(module.eta(2))
    # step 3 gets the stated extension of the two-step law (a conjecture, said in theory_note)
    extension = extended_outlier_count(module.schedule.exponents(3)).total
    assert records[2]["predicted_outliers"] == 3 and records[3]["predicted_outliers"] == extension
    assert "outside the two-step theory" in records[3]["theory_note"]
    assert len(records[2]["alignment"]) == records[2]["outliers"] and len(records[2]["captured_energy"]) == 1

    pandas = pytest.importorskip("pandas")
    frame = pandas.read_json(record_path, lines=True)
    assert list(frame["step"]) == [0, 1, 2, 3] and list(frame["outliers"]) == [r["outliers"] for r in records]

    # TensorBoard: scalars at every analysed step; histograms at 0, the decades and the last step (the default);
    # figures on their cadence
    acc = _events(Path(logger.log_dir))
    tags = acc.Tags()
    for tag in (
        "spectrum/W/outliers", "spectrum/W/outliers_deflated", "spectrum/W/predicted_outliers",
        "spectrum/W/predicted_outliers_finite_n", "spectrum/W/bulk_edge", "spectrum/W/bulk_edge_theory",
        "spectrum/W/bulk_edge_mp", "spectrum/W/cut", "spectrum/W/outliers_marginal",
        "spectrum/W/singular_value_0", "spectrum/W/outlier_value_0", "spectrum/W/alignment/beta_0",
        "spectrum/W/order_strength/k0", "spectrum/W/order_strength/k1",
    ):
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("spectrum/W/outliers")] == [0, 1, 2, 3]
    assert [e.value for e in acc.Scalars("spectrum/W/outliers")] == [r["outliers"] for r in records]
    assert [e.step for e in acc.Scalars("spectrum/W/predicted_outliers")] == [0, 1, 2, 3]  # 3: the extension
    hist = acc.Histograms("spectrum/W/singular_values")
    assert [e.step for e in hist] == [0, 1, 3]
    assert hist[0].histogram_value.num == SIZE
    assert [e.step for e in acc.Images("spectrum/W/figure")] == [0, 1, 3]
    assert sorted(p.name for p in (Path(logger.log_dir) / "figures").iterdir()) == [
        f"spectrum_W_step{t:06d}.png" for t in (0, 1, 3)
    ]


def test_counts_and_alignments_are_the_engines_on_the_saved_snapshot(tmp_path):
    module, data = _setup(batches="reused", size=300, steps_c=(2.0, 2.0))
    monitor = SpectrumMonitor(dirpath=tmp_path)
    snapshots = WeightSnapshot(dirpath=tmp_path / "snaps", first_k=2)
    _trainer([monitor, snapshots], 2).fit(module, data)
    snaps = load_snapshots(tmp_path / "snaps")
    assert [s.step for s in snaps] == [0, 1, 2]
    W0, W1, W2 = (s.weights["W"] for s in snaps)
    a = snaps[2].a
    theory = TheoryInputs(a=a, B=snaps[2].B, alphas=[0.3, 0.45], a_kind="gaussian",
                          activation_coefficients=activation_coefficients(module.activation, 5).tolist())
    previous = analyze(W1, theory, EngineConfig(k=32), step=1)[1]  # the previous analysis's outliers (identities)
    references = EngineState(products=reference_products(W1, a, 4), products_step=1,
                             identities=previous.identities)
    offline = analyze(W2, theory, EngineConfig(k=32), references, step=2)[0].record()
    online = monitor.history[-1]
    assert online["step"] == 2 and online["outliers"] >= 1
    for key in ("outliers", "outliers_deflated", "predicted_outliers", "predicted_outliers_finite_n"):
        assert online[key] == offline[key], key
    # warm start (online) vs cold start (offline) differ only within the solver's tolerance
    torch.testing.assert_close(torch.tensor(online["alignment"]), torch.tensor(offline["alignment"]), atol=1e-3, rtol=0)
    torch.testing.assert_close(torch.tensor(online["outlier_values"]), torch.tensor(offline["outlier_values"]), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(online["order_strengths"]), torch.tensor(offline["order_strengths"]), atol=1e-4, rtol=1e-4)


def test_resume_continues_the_record_without_duplicates(tmp_path):
    steps_full = 5
    # uninterrupted reference
    module, data = _setup(size=120)
    reference = SpectrumMonitor(dirpath=tmp_path / "ref", analyses=Cadence(every_n_steps=1), histograms=False)
    _trainer([reference], steps_full).fit(module, data)

    # interrupted: checkpoints every step, the run goes on to step 4, then we resume from step 2's checkpoint
    module, data = _setup(size=120)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1, filename="{step}")
    first = SpectrumMonitor(analyses=Cadence(every_n_steps=1), histograms=False)
    logger = TensorBoardLogger(tmp_path, name="run", version=0)
    _trainer([first, ckpt], 4, logger=logger, ckpt=True).fit(module, data)
    record = Path(logger.log_dir) / RECORD_FILENAME
    with open(record, "a") as handle:  # and was killed while writing step 5's line
        handle.write('{"step": 5, "param": "W", "outl')
    assert [r["step"] for r in read_records(record, drop_truncated=True)] == [0, 1, 2, 3, 4]

    for version in (0, 1):  # same log dir (truncated in place) and a fresh version dir (prefix copied)
        module, data = _setup(size=120)
        resumed = SpectrumMonitor(analyses=Cadence(every_n_steps=1), histograms=False)
        logger = TensorBoardLogger(tmp_path, name="run", version=version)
        _trainer([resumed], steps_full, logger=logger, ckpt=True).fit(module, data, ckpt_path=tmp_path / "ckpt" / "step=2.ckpt")
        steps = [r["step"] for r in read_records(Path(logger.log_dir) / RECORD_FILENAME)]
        assert steps == list(range(steps_full + 1)), (version, steps)
        assert [r["step"] for r in resumed.history] == steps
        ref = reference.history
        for key in ("outliers", "outliers_deflated", "predicted_outliers", "predicted_outliers_finite_n"):
            assert [r[key] for r in resumed.history] == [r[key] for r in ref], key


class _MLP(L.LightningModule):
    """A small 3-layer MLP on random regression data: not spikelearn's module."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(30, 40), torch.nn.Tanh(), torch.nn.Linear(40, 20), torch.nn.Tanh(), torch.nn.Linear(20, 1)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 30, generator=g)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x[:, 0].clone()), batch_size=16)


def test_any_model_two_named_weights_with_several_loggers(tmp_path):
    names = ["net.0.weight", "net.2.weight"]
    monitor = SpectrumMonitor(params=names, figures=Cadence(first_k=1), engine=EngineConfig(k=8))
    snapshots = WeightSnapshot(params=names, first_k=3)
    loggers = [TensorBoardLogger(tmp_path, name="tb", version=0), CSVLogger(tmp_path, name="csv", version=0)]
    _trainer([monitor, snapshots], 3, logger=loggers).fit(_MLP())
    assert [(r["step"], r["param"]) for r in monitor.history] == [(t, n) for t in range(4) for n in names]
    for r in monitor.history:
        assert (r["N"], r["d"]) == ((40, 30) if r["param"] == names[0] else (20, 40))
        for key in THEORY_FIELDS:
            assert r[key] is None, key
        assert "does not provide the two-layer theory's inputs" in r["theory_note"]
        assert r["singular_values"] and r["bulk_edge"] > 0
    assert read_records(Path(loggers[0].log_dir) / RECORD_FILENAME) == json.loads(json.dumps(monitor.history))
    acc = _events(Path(loggers[0].log_dir))
    assert {"spectrum/net.0.weight/outliers", "spectrum/net.2.weight/outliers"} <= set(acc.Tags()["scalars"])
    assert "spectrum/net.2.weight/predicted_outliers" not in acc.Tags()["scalars"]
    assert "spectrum/net.0.weight/singular_values" in acc.Tags()["histograms"]
    csv_text = (Path(loggers[1].log_dir) / "metrics.csv").read_text()
    assert "spectrum/net.2.weight/bulk_edge" in csv_text
    snaps = load_snapshots(Path(loggers[0].log_dir) / "snapshots")
    assert [s.step for s in snaps] == [0, 1, 2, 3] and set(snaps[-1].weights) == set(names)
    assert snaps[0].a is None and snaps[0].B is None and snaps[0].eta is None


def test_no_logger_writes_to_default_root_dir(tmp_path):
    module, data = _setup(size=100)
    monitor = SpectrumMonitor(figures=Cadence(first_k=0, last_step=True))
    _trainer([monitor], 1, root=tmp_path).fit(module, data)
    assert [r["step"] for r in read_records(tmp_path / RECORD_FILENAME)] == [0, 1]
    assert (tmp_path / "figures" / "spectrum_W_step000001.png").exists()


def test_generic_model_needs_params_and_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"`params` must name the weights.*\['net.0.weight', 'net.2.weight', 'net.4.weight'\]"):
        _trainer([SpectrumMonitor(dirpath=tmp_path)], 1).fit(_MLP())
    with pytest.raises(ValueError, match="`every_n_steps` must be an integer >= 1, got 0"):
        SpectrumMonitor(analyses={"every_n_steps": 0})
    with pytest.raises(ValueError, match="`every_n_steps`"):
        SpectrumMonitor(histograms={"every_n_steps": 0})
    with pytest.raises(ValueError, match="`quantile`"):
        SpectrumMonitor(engine={"quantile": 0.1})
    with pytest.raises(ValueError, match="`k`"):
        SpectrumMonitor(engine={"k": 0})
    with pytest.raises(ValueError, match="`outlier_rule` must be one of"):
        SpectrumMonitor(engine={"outlier_rule": "nosuch"})
    with pytest.raises(ValueError, match="`figures`"):
        SpectrumMonitor(figures="often")


# ---------------------------------------------------------------------------------------------- subprocess runs
CONFIG = """\
seed_everything: 0
trainer:
  max_steps: {steps}
  accelerator: cpu
  devices: 1
  enable_progress_bar: false
  callbacks:
    - class_path: spikelearn.callbacks.SpectrumMonitor
      init_args:
        figures: false
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args:
        every_n_train_steps: 1
        save_top_k: -1
        filename: "{{step}}"
  logger:
    class_path: lightning.pytorch.loggers.TensorBoardLogger
    init_args:
      save_dir: {root}
      name: run
model:
  width: 128
  step_c: [2.0, 2.0]
  step_alpha: [0.3, 0.45]
data:
  input_dim: 128
  batch_size: 128
  batches: reused
  target: he1
"""


def _cli(tmp_path: Path, *extra: str, steps: int = 2, root: str = "logs") -> subprocess.CompletedProcess:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(steps=steps, root=tmp_path / root))
    cmd = [sys.executable, "-m", "spikelearn.cli", "fit", "--config", str(config), *extra]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_ddp_two_processes_write_one_record_equal_to_one_process(tmp_path):
    _cli(tmp_path, root="single")
    _cli(tmp_path, "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu", root="ddp")
    single = read_records(tmp_path / "single" / "run" / "version_0" / RECORD_FILENAME)
    ddp_dirs = sorted((tmp_path / "ddp" / "run").iterdir())
    assert len(ddp_dirs) == 1, ddp_dirs  # rank 1 made no directory of its own
    ddp = read_records(ddp_dirs[0] / RECORD_FILENAME)
    assert [r["step"] for r in ddp] == [r["step"] for r in single] == [0, 1, 2]  # one line per step
    for key in ("outliers", "outliers_deflated", "predicted_outliers", "predicted_outliers_finite_n"):
        assert [r[key] for r in ddp] == [r[key] for r in single], key
    torch.testing.assert_close(
        torch.tensor([r["singular_values"][0] for r in ddp]), torch.tensor([r["singular_values"][0] for r in single]),
        rtol=1e-4, atol=1e-5,
    )


@pytest.mark.slow
def test_cli_resume_from_checkpoint_continues_the_record(tmp_path):
    _cli(tmp_path, steps=3)
    first = tmp_path / "logs" / "run" / "version_0"
    assert [r["step"] for r in read_records(first / RECORD_FILENAME)] == [0, 1, 2, 3]
    _cli(tmp_path, f"--ckpt_path={first / 'checkpoints' / 'step=1.ckpt'}", steps=4)
    second = tmp_path / "logs" / "run" / "version_1"
    assert [r["step"] for r in read_records(second / RECORD_FILENAME)] == [0, 1, 2, 3, 4]


def test_two_monitors_on_different_weights_coexist_in_one_checkpoint(tmp_path):
    import lightning as L

    from spikelearn.callbacks import SpectrumMonitor, WeightSnapshot

    first, second = SpectrumMonitor(params="W", dirpath=tmp_path / "a"), SpectrumMonitor(params="W", dirpath=tmp_path / "b")
    snapshots = [WeightSnapshot(dirpath=tmp_path / "s1"), WeightSnapshot(dirpath=tmp_path / "s2")]
    assert len({cb.state_key for cb in (first, second, *snapshots)}) == 4
    trainer = L.Trainer(max_steps=1, max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        use_distributed_sampler=False, callbacks=[first, second, *snapshots], default_root_dir=tmp_path)
    from spikelearn.data import GaussianDataModule
    from spikelearn.module import TwoLayerModule

    trainer.fit(TwoLayerModule(width=32, input_dim=32), GaussianDataModule(input_dim=32, batch_size=32))
    trainer.save_checkpoint(tmp_path / "both.ckpt")
    assert [r["step"] for r in first.history] == [r["step"] for r in second.history] == [0, 1]


from spikelearn.functional.schedule import StepSchedule  # noqa: E402


class _OwnTwoLayer(L.LightningModule):
    """A user's own two-layer network (not spikelearn's class) that provides the TwoLayerTheory members."""

    def __init__(self, N: int = 64, d: int = 48) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.first = torch.nn.Linear(d, N, bias=False)
        self.register_buffer("a", torch.randn(N, generator=g) / N**0.5)
        self.a_kind, self.activation = "gaussian", "shifted_tanh"
        self.schedule = StepSchedule.validated([1.0, 1.0], [0.3, 0.45], "constant")
        self.N = N

    def eta(self, step: int) -> float:
        return self.schedule.eta(step, self.N)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(torch.tanh(self.first(x) + 0.5) @ self.a / self.N**0.5, y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1.0)

    def train_dataloader(self):
        x = torch.randn(96, 48, generator=torch.Generator().manual_seed(1))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x[:, 0].clone()), batch_size=96)


def test_a_users_own_two_layer_module_gets_the_theory_through_the_protocol(tmp_path):
    monitor = SpectrumMonitor(params="first.weight", engine=EngineConfig(k=8))
    _trainer([monitor], 2, root=tmp_path).fit(_OwnTwoLayer())
    last = monitor.history[-1]
    assert last["predicted_outliers"] == 3 and last["order_strengths"] is not None
    assert last["outliers_deflated"] is not None and last["eta"] == pytest.approx(64**0.45)


def test_bf16_weights_are_analysed_as_a_float32_copy(tmp_path):
    module, data = _setup(size=64)
    monitor = SpectrumMonitor(engine=EngineConfig(k=8), histograms=Cadence(every_n_steps=1))
    _trainer([monitor], 1, root=tmp_path, precision="bf16-true").fit(module, data)
    assert [r["step"] for r in monitor.history] == [0, 1]
    assert all("bfloat16 weights analysed as a float32 copy" in r["theory_note"] for r in monitor.history)


def test_histogram_of_a_large_weight_comes_from_the_density_estimate(tmp_path):
    # rank 320 > 256: the histogram is the SLQ estimate with the engine's top values exact; its fixed-width bins
    # stop at the cut, so the counts hold the bulk (min(N, d) minus the outliers above the last bin edge)
    module, data = _setup(size=320)
    monitor = SpectrumMonitor(engine=EngineConfig(k=8), histograms=Cadence(every_n_steps=1))
    logger = TensorBoardLogger(tmp_path, name="tb", version=0)
    _trainer([monitor], 1, logger=logger).fit(module, data)
    acc = _events(Path(logger.log_dir))
    events = acc.Histograms("spectrum/W/singular_values")
    assert [e.step for e in events] == [0, 1]
    last = monitor.history[-1]
    counts = events[-1].histogram_value.bucket
    assert sum(counts) == 320 - last["outliers"]
    assert events[-1].histogram_value.bucket_limit[-1] >= last["cut"]


def test_default_cadences_are_log_spaced_with_the_last_step_and_no_figure(tmp_path):
    """SpectrumMonitor(): analyses at 0, 1, 2, 3, 6, 10 and the last step (12); histograms at 0, 1, 10 and 12;
    no figure during training."""
    module, data = _setup(size=64)
    monitor = SpectrumMonitor(engine=EngineConfig(k=8))
    logger = TensorBoardLogger(tmp_path, name="run", version=0)
    _trainer([monitor], 12, logger=logger).fit(module, data)
    assert [r["step"] for r in monitor.history] == [0, 1, 2, 3, 6, 10, 12]
    acc = _events(Path(logger.log_dir))
    assert [e.step for e in acc.Histograms("spectrum/W/singular_values")] == [0, 1, 10, 12]
    assert "spectrum/W/figure" not in acc.Tags()["images"]
    assert not (Path(logger.log_dir) / "figures").exists()


@pytest.mark.parametrize("kwargs", [{"figures": {"per_decade": 0}}, {"histograms": {"per_decade": 1.5}},
                                    {"analyses": {"last_step": "yes"}}, {"figures": {"first_k": -1}},
                                    {"analyses": {"every": 2}}])
def test_cadence_arguments_are_validated_by_name(kwargs):
    (name, fields), = kwargs.items()
    with pytest.raises((ValueError, TypeError), match="|".join(f"`?{field}`?" for field in fields)):
        SpectrumMonitor(**kwargs)


@pytest.mark.parametrize("first_k,every,per_decade", [(0, 1, None), (3, 10, None), (0, 1, 4), (2, 1, 4), (10, 3, 2), (0, 1, 10)])
def test_cadence_selects_its_definition_in_any_query_order(first_k, every, per_decade):
    # step 0..first_k, then multiples of every, or the log grid round(10^(i / per_decade)); the cached window
    # must answer the same for increasing steps (as a callback asks) and for steps asked out of order
    from spikelearn.callbacks._cadence import Cadence

    grid = {round(10 ** (i / per_decade)) for i in range(0, 5 * per_decade + 1)} if per_decade else set()
    expected = [t for t in range(20000) if t <= first_k or (t in grid if per_decade else t % every == 0)]
    cadence = Cadence(first_k, every, per_decade)
    assert [t for t in range(20000) if t in cadence] == expected
    order = torch.randperm(20000, generator=torch.Generator().manual_seed(0)).tolist()[:2000]
    assert [t for t in order if t in cadence] == [t for t in order if t in set(expected)]
