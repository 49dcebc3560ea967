"""Issue 18 rows 6 and 7: a count never exceeds the numerical rank, a degenerate bulk is said to be one, and a zero
weight is recorded (count 0, theory_note) without stopping the user's training; non-finite weights still stop it."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from spikelearn.callbacks import SpectrumMonitor
from spikelearn.functional.engine import analyze
from spikelearn.functional.inputs import EngineConfig


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _low_rank(N: int, d: int, rank: int, seed: int = 0) -> torch.Tensor:
    g = _gen(seed)
    return torch.randn(N, rank, generator=g) @ torch.randn(rank, d, generator=g) / rank


@pytest.mark.parametrize("W", [torch.ones(128, 64), _low_rank(128, 64, 8), torch.zeros(128, 64)],
                         ids=["ones", "rank-8", "zeros"])
def test_a_degenerate_bulk_has_no_outliers_and_says_why(W):
    # before: ones(128, 64) reported 34 "clear" outliers (edge 0, cut 0), a rank-8 weight 52, zeros raised
    record = analyze(W, config=EngineConfig(k=32))[0].record()
    assert (record["outliers"], record["edge_method"]) == (0, "degenerate")
    assert "zero" in record["theory_note"] or "degenerate bulk" in record["theory_note"]


@pytest.mark.parametrize("rank", [20, 40, 56])
def test_a_count_never_exceeds_the_numerical_rank(rank):
    W = _low_rank(128, 64, rank)
    assert analyze(W, config=EngineConfig(k=32))[0].outliers.count <= rank


def test_a_spike_on_a_rank_deficient_bulk_is_still_found():
    # a rank-50 bulk of a 160 x 64 weight (14 zero singular values) plus one strong spike: the zeros are no bulk
    g = _gen(3)
    U, _ = torch.linalg.qr(torch.randn(160, 50, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(64, 50, generator=g, dtype=torch.float64))
    bulk = U @ torch.diag(torch.linspace(1.0, 0.2, 50, dtype=torch.float64) ** 0.5) @ V.T
    W = (bulk + 4.0 * U[:, :1] @ V[:, :1].T).float()
    outliers = analyze(W, config=EngineConfig(k=32))[0].outliers
    assert (outliers.count, outliers.method) == (1, "edge_fit")


class _ZeroLayer(L.LightningModule):
    """A model whose watched first layer is zero (a healthy run: the second layer still learns)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Parameter(torch.zeros(128, 64))
        self.second = torch.nn.Linear(64, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.second(x).squeeze(-1), y) + 0.0 * self.first.sum()

    def configure_optimizers(self):
        return torch.optim.SGD([self.second.weight, self.second.bias], lr=0.1)

    def train_dataloader(self):
        x = torch.randn(32, 64, generator=_gen(0))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x[:, 0].clone()), batch_size=16)


def test_a_zero_watched_weight_is_recorded_and_training_goes_on(tmp_path):
    monitor = SpectrumMonitor(params="first", dirpath=tmp_path, histograms=False)
    trainer = L.Trainer(max_steps=2, max_epochs=-1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor])
    trainer.fit(_ZeroLayer())
    assert trainer.global_step == 2
    assert [r["outliers"] for r in monitor.history] == [0, 0, 0]
    assert all("zero" in r["theory_note"] for r in monitor.history)


def test_a_non_finite_weight_still_stops_the_run(tmp_path):
    model = _ZeroLayer()
    with torch.no_grad():
        model.first[0, 0] = float("nan")
    monitor = SpectrumMonitor(params="first", dirpath=tmp_path, histograms=False)
    trainer = L.Trainer(max_steps=1, max_epochs=-1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor])
    with pytest.raises(ValueError, match="'first' at step 0 is not finite"):
        trainer.fit(model)
