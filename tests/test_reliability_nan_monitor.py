"""SpectrumMonitor on any model whose watched weight turns non-finite (issue 11 row 10): the error must name the
parameter and the step, not only the engine's "`W` must be finite".

The check lives in callbacks/spectrum.py (SpectrumMonitor catches the engine's finiteness error and re-raises it
with the parameter name and step)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from reliability_helpers import MONITOR_KWARGS, tiny_trainer

from spikelearn.callbacks import SpectrumMonitor


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        X, y = batch
        return torch.nn.functional.mse_loss(self.net(X).squeeze(-1), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        X = torch.randn(64, 8, generator=g)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, X[:, 0]), batch_size=16)


class PoisonAt(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 2:
            with torch.no_grad():
                pl_module.net[0].weight[0, 0] = float("nan")


def test_non_finite_weight_is_named_with_its_step(tmp_path):
    monitor = SpectrumMonitor(params=["net.0.weight"], dirpath=tmp_path, **{**MONITOR_KWARGS, "engine": {"k": 4, "max_order": 1}})
    with pytest.raises(ValueError, match=r"SpectrumMonitor: parameter 'net.0.weight' at step 2 is not finite"):
        tiny_trainer(tmp_path, 3, callbacks=[PoisonAt(), monitor]).fit(Net())
