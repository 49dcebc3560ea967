"""The spectrum figure: builds from a record, prints c = N/d, draws theory beside measurement."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from spikelearn.plotting import spectrum_figure


def _spectrum(N=150, d=100, spike=4.0):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(N, d, generator=g, dtype=torch.float64) / d**0.5
    u, v = torch.randn(N, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    return torch.linalg.svdvals(W + spike * torch.outer(u / u.norm(), v / v.norm()))


def test_full_spectrum_figure_has_density_edges_outliers_and_predictions(tmp_path):
    values = _spectrum()
    record = {"N": 150, "d": 100, "bulk_edge": 2.25, "margin": 0.05, "noise_scale": 1.0,
              "outlier_values": values[:1].tolist(), "predicted_locations": [4.3], "predicted_outliers": 1,
              "predicted_outliers_finite_n": 1, "outliers_deflated": 0, "step": 2, "eta": 12.5, "param": "W"}
    fig = spectrum_figure(values, record)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    bulk, top = fig.axes
    assert bulk.get_title() == "W: singular values (c = N/d = 1.5)"
    labels = bulk.get_legend_handles_labels()[1]
    assert any(lab.startswith("MP") for lab in labels) and any("TW cut" in lab for lab in labels)
    assert any(lab.startswith("1+√c = 2.225") for lab in labels) and "ESD" in labels
    text = "\n".join(t.get_text() for t in top.texts)
    assert "c = N/d = 150/100 = 1.5" in text and "predicted: 1 asymptotic / 1 finite-N" in text
    assert "measured: 1 outliers (0 deflated)" in text
    assert "BGN prediction" in top.get_legend_handles_labels()[1]
    assert top.get_title() == "top singular values, step 2, η = 12.5"
    fig.savefig(tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 10_000


def test_top_values_only_and_unknown_theory():
    fig = spectrum_figure([3.0, 2.1, 2.0, 1.9], {"N": 300, "d": 100})
    text = "\n".join(t.get_text() for t in fig.axes[1].texts)
    assert "predicted" not in text and "c = N/d = 300/100 = 3" in text
    assert "ESD" not in fig.axes[0].get_legend_handles_labels()[1]  # partial spectrum: a rug, no histogram


@pytest.mark.parametrize(("record", "match"), [({"N": 0, "d": 3}, "`N` must be a positive integer"),
                                               ({"N": 3, "d": 2.5}, "`d`"), ({"d": 3}, "`N`")])
def test_bad_sizes_are_named(record, match):
    with pytest.raises(ValueError, match=match):
        spectrum_figure([1.0], record)


def test_empty_values_rejected():
    with pytest.raises(ValueError, match="at least one value"):
        spectrum_figure([], {"N": 2, "d": 2})
