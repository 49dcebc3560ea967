"""The Lightning module: one optimizer step is W + eta sqrt(N) G(W), resume is exact, divergence stops."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from spikelearn.data import GaussianDataModule
from spikelearn.functional import negative_gradient
from spikelearn.module import DivergenceError, TwoLayerModule

SIZE = 48


def _module(**kwargs):
    return TwoLayerModule(**{"width": SIZE, "input_dim": SIZE, "step_c": [1.0, 1.0], "step_alpha": [0.3, 0.45], **kwargs})


def _data(**kwargs):
    return GaussianDataModule(**{"input_dim": SIZE, "batch_size": 64, "seed": 1, "test_size": 64, "readout_size": 64, **kwargs})


def _trainer(tmp_path, max_steps, **kwargs):
    return L.Trainer(
        max_steps=max_steps, max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False, accelerator="cpu", devices=1,
        default_root_dir=tmp_path, **kwargs,
    )


@pytest.mark.parametrize("batches", ["independent", "reused"])
@pytest.mark.parametrize("loss", ["mse", "correlation"])
def test_one_step_moves_W_by_eta_sqrtN_G(tmp_path, batches, loss):
    module, data = _module(loss=loss), _data(batches=batches)
    W0 = module.W.detach().double().clone()
    _trainer(tmp_path, 1, precision="64-true").fit(module, data)
    batch = data.full_batch(1, dtype=torch.float64)
    G = negative_gradient(W0, module.a, batch.X, batch.y, module.activation, loss)
    step = module.eta(1) * math.sqrt(SIZE) * G
    # float64 autograd vs closed form: relative error ~1e-15; 1e-10 as for the gradient test
    assert float(((module.W.detach() - W0) - step).norm() / step.norm()) <= 1e-10


def test_second_layer_stays_fixed(tmp_path):
    module = _module()
    a0 = module.a.clone()
    _trainer(tmp_path, 2).fit(module, _data())
    assert torch.equal(module.a, a0)


def test_learning_rate_follows_the_schedule(tmp_path):
    module = _module(step_c=[1.0, 2.0, 0.5], step_alpha=[0.1, 0.2, 0.3])
    seen = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    _trainer(tmp_path, 4, callbacks=[Spy()]).fit(module, _data())
    expected = [c * SIZE**alpha * math.sqrt(SIZE) for c, alpha in [(1.0, 0.1), (2.0, 0.2), (0.5, 0.3), (0.5, 0.3)]]
    assert seen == pytest.approx(expected, rel=1e-12)


def test_six_steps_equal_three_plus_resume_plus_three(tmp_path):
    straight = _module()
    _trainer(tmp_path / "a", 6).fit(straight, _data())
    first = _module()
    trainer = _trainer(tmp_path / "b", 3)
    trainer.fit(first, _data())
    trainer.save_checkpoint(tmp_path / "three.ckpt")
    resumed = _module()
    _trainer(tmp_path / "c", 6).fit(resumed, _data(), ckpt_path=tmp_path / "three.ckpt")
    assert float((resumed.W.detach() - straight.W.detach()).abs().max()) == 0.0


def test_same_seed_same_weights(tmp_path):
    runs = []
    for name in ("a", "b"):
        module = _module()
        _trainer(tmp_path / name, 3).fit(module, _data())
        runs.append(module.W.detach())
    assert torch.equal(*runs)


def test_divergence_stops_with_a_message(tmp_path):
    module = _module(step_c=[1e6], step_alpha=[0.45], max_norm_growth=10.0)
    with pytest.raises(DivergenceError, match=r"after step 1 \(eta_t = .*max_norm_growth"):
        _trainer(tmp_path, 3).fit(module, _data())


def test_readout_logs_train_and_test_mse_and_its_standard_error(tmp_path):
    module = _module(readout=True)
    _trainer(tmp_path, 2).fit(module, _data())
    assert set(module.readout_metrics) == {"readout/train_mse", "readout/test_mse", "readout/test_mse_stderr"}
    assert all(math.isfinite(v) and v >= 0 for v in module.readout_metrics.values())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"width": 0}, "model.width"),
    ({"input_dim": -1}, "model.input_dim"),
    ({"activation": "swish"}, "activation"),
    ({"loss": "l1"}, "model.loss"),
    ({"init": "orthogonal"}, "init"),
    ({"readout_init": "zeros"}, "readout_init"),
    ({"step_c": [1.0], "step_alpha": [0.1, 0.2]}, "equal length"),
    ({"step_c": [-1.0], "step_alpha": [0.1]}, r"step_c\[0\]"),
    ({"step_tail": "linear"}, "step_tail"),
    ({"seed": -2}, "model.seed"),
    ({"readout_ridge": -1.0}, "model.readout_ridge"),
    ({"max_norm_growth": 0.5}, "model.max_norm_growth"),
])
def test_bad_model_config_names_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _module(**kwargs)


def test_batch_size_must_divide_world_size(tmp_path):
    data = _data(batch_size=63)

    class FakeTrainer:
        world_size = 2

    data.trainer = FakeTrainer()
    with pytest.raises(ValueError, match="divisible by the world size"):
        data.setup("fit")
