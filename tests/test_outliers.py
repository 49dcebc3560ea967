"""Outlier rules (SPEC §4): the protocol, the registry, and a rule defined here and selected by name."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import pytest
import torch

from spikelearn.callbacks import SpectrumMonitor
from spikelearn.data import GaussianDataModule
from spikelearn.functional import outliers
from spikelearn.functional.engine import analyze
from spikelearn.functional.inputs import EngineConfig
from spikelearn.functional.outliers import (
    OUTLIER_RULES,
    EdgeScanRule,
    MarchenkoPasturRule,
    OutlierRule,
    Outliers,
    outlier_rule,
    outliers_above,
    register_outlier_rule,
)
from spikelearn.functional.rmt import mp_bulk_edge
from spikelearn.module import TwoLayerModule


@register_outlier_rule
class HalfAgainRule:
    """A toy rule: outliers are the values 1.5x above the Marchenko-Pastur edge at the noise scale of ||W||_F^2."""

    name = "test_half_again"
    window = 0

    def __init__(self, quantile: float = 0.999) -> None:
        self.quantile = quantile

    def detect(self, values: Sequence[float], *, N: int, d: int, frobenius_sq: float) -> Outliers:
        edge = mp_bulk_edge(N / d, (frobenius_sq / (min(N, d) * max(N / d, 1.0))) ** 0.5)
        return outliers_above(values, N=N, d=d, frobenius_sq=frobenius_sq, edge=edge, cut=1.5 * edge, scale=0.0,
                              method=self.name)


def _planted(N: int, d: int, strengths: Sequence[float], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, d, generator=g, dtype=torch.float64) / d**0.5
    U = torch.linalg.qr(torch.randn(N, len(strengths), generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(d, len(strengths), generator=g, dtype=torch.float64))[0]
    return X + U @ torch.diag(torch.tensor(strengths, dtype=torch.float64)) @ V.T


def test_all_unique():
    assert len(outliers.__all__) == len(set(outliers.__all__))


@pytest.mark.parametrize("name", ["edge_scan", "marchenko_pastur", "test_half_again"])
def test_registered_rules_follow_the_protocol(name):
    assert isinstance(outlier_rule(name), OutlierRule) and outlier_rule(name).name == name


def test_a_rule_defined_in_a_test_is_selected_by_name():
    # strengths 5 and 2 at c = 1: BGN locations 5.2 and 2.5 against an edge of ~2 -> cut 3: only the first clears it
    W = _planted(300, 300, [5.0, 2.0])
    analysis, _ = analyze(W, config=EngineConfig(k=8, outlier_rule="test_half_again"))
    assert (analysis.outliers.count, analysis.record()["edge_method"]) == (1, "test_half_again")


def test_the_default_rule_counts_both_planted_spikes():
    W = _planted(300, 300, [5.0, 2.0])
    assert analyze(W, config=EngineConfig(k=8))[0].outliers.count == 2


def test_the_monitor_selects_a_rule_by_name(tmp_path):
    monitor = SpectrumMonitor(dirpath=tmp_path, engine={"k": 8, "outlier_rule": "test_half_again"}, histograms=False)
    L.Trainer(max_steps=1, max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, callbacks=[monitor]).fit(
        TwoLayerModule(width=96, input_dim=96), GaussianDataModule(input_dim=96, batch_size=96))
    assert {r["edge_method"] for r in monitor.history} == {"test_half_again"}


def test_the_marchenko_pasturrule_is_the_edge_scans_fallback():
    values = [5.0, 2.015, 2.005]  # too few values for an edge fit
    kw = dict(N=1000, d=1000, frobenius_sq=1025.0)
    assert MarchenkoPasturRule().detect(values, **kw) == EdgeScanRule().detect(values, **kw)


def test_a_name_taken_by_another_rule_is_refused():
    class Other:
        name = "edge_scan"

    with pytest.raises(ValueError, match="already registered"):
        register_outlier_rule(Other)
    assert OUTLIER_RULES["edge_scan"] is EdgeScanRule


def test_an_unknown_rule_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match="marchenko_pastur"):
        outlier_rule("nosuch")
