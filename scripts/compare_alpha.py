"""Counts and the tail exponent alpha of trained layers, spikelearn beside weightwatcher (issue 19's table).

Trains the two models of issue 19 on scikit-learn's digits (bundled with scikit-learn, no download): an MLP
64 → 512 → 512 → 10 (ReLU, 2000 SGD steps, batch 64, lr 0.05) and a one-layer ``nn.TransformerEncoder`` (the 8 rows of
a digit as 8 tokens, d_model 128, 4 heads, feed-forward 256; 1000 Adam steps, lr 1e-3), then analyses the six weights
with spikelearn's engine (counted outliers, the rule's candidates, the count's status, ``tail_alpha``) and, when
weightwatcher is installed (``pip install -e '.[bench]'``), with weightwatcher's ``analyze(mp_fit=True)``
(``num_spikes``, ``alpha``). Both alphas are in weightwatcher's convention (the power-law density exponent of the
eigenvalues of ``WᵀW``): spikelearn's is Hill's estimator over its top 16 values, weightwatcher's the
Clauset–Shalizi–Newman fit with its own ``xmin`` (docs/theory.md §4).

    python scripts/compare_alpha.py                 # ~1 min on a laptop CPU
    python scripts/compare_alpha.py --mlp-steps 20 --transformer-steps 10   # a smoke run
"""

from __future__ import annotations

import argparse
import logging
import math

import torch
from torch import nn

from spikelearn.functional.engine import analyze
from spikelearn.functional.inputs import EngineConfig


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    X = torch.tensor(data.data, dtype=torch.float32) / 16.0  # (1797, 64) in [0, 1]
    return X, torch.tensor(data.target, dtype=torch.long)


class _Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 128)
        layer = nn.TransformerEncoderLayer(128, 4, dim_feedforward=256, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x.view(-1, 8, 8)))  # (B, 8 tokens, 128)
        return self.head(h.mean(dim=1))


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, X: torch.Tensor, y: torch.Tensor,
           seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    loss = nn.CrossEntropyLoss()
    for _ in range(steps):
        idx = torch.randint(0, X.shape[0], (64,), generator=g)
        optimizer.zero_grad()
        loss(model(X[idx]), y[idx]).backward()
        optimizer.step()


def trained_layers(mlp_steps: int = 2000, transformer_steps: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]:
    """The six weights of issue 19's table, ``name -> W`` (out, in), after training on digits."""
    torch.manual_seed(seed)
    X, y = _digits()
    mlp = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    _train(mlp, torch.optim.SGD(mlp.parameters(), lr=0.05), mlp_steps, X, y, seed)
    tr = _Transformer()
    _train(tr, torch.optim.Adam(tr.parameters(), lr=1e-3), transformer_steps, X, y, seed)
    layer = tr.encoder.layers[0]
    return {
        "MLP 512 × 64 (first)": mlp[0].weight,
        "MLP 512 × 512": mlp[2].weight,
        "MLP 10 × 512 (output)": mlp[4].weight,
        "Transformer linear1 256 × 128": layer.linear1.weight,
        "Transformer linear2 128 × 256": layer.linear2.weight,
        "Transformer out_proj 128 × 128": layer.self_attn.out_proj.weight,
    }


def weightwatcher_row(W: torch.Tensor) -> tuple[int, float]:
    """weightwatcher 0.7's ``(num_spikes, alpha)`` of one weight (``analyze(mp_fit=True)`` on a one-layer model).

    Raises:
        ImportError: when weightwatcher is not installed.
    """
    import weightwatcher  # optional; it reconfigures global logging, so it is imported only here

    model = nn.Sequential(nn.Linear(W.shape[1], W.shape[0], bias=False))
    with torch.no_grad():
        model[0].weight.copy_(W)
    level = logging.getLogger().level
    details = weightwatcher.WeightWatcher(model=model).analyze(mp_fit=True)
    logging.getLogger().setLevel(level)
    return int(details["num_spikes"].iloc[0]), float(details["alpha"].iloc[0])


def compare(layers: dict[str, torch.Tensor], with_weightwatcher: bool = True) -> list[dict[str, object]]:
    """One row per layer: spikelearn's count, candidates, status, alpha; weightwatcher's spikes and alpha (or None)."""
    rows = []
    for name, W in layers.items():
        W = W.detach().to(torch.float64)
        an = analyze(W, config=EngineConfig())[0]
        reg = an.regularity
        row: dict[str, object] = {
            "layer": name, "outliers": an.outliers.count, "marginal": an.outliers.marginal,
            "candidates": reg.candidates, "status": reg.status, "alpha": reg.tail_alpha,
            "ww_spikes": None, "ww_alpha": None,
        }
        if with_weightwatcher:
            row["ww_spikes"], row["ww_alpha"] = weightwatcher_row(W.float())
        rows.append(row)
    return rows


def _cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def table(rows: list[dict[str, object]]) -> str:
    """The rows as a markdown table."""
    lines = ["| layer | spikelearn (candidates) | status | spikelearn alpha | weightwatcher | ww alpha |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        count = f"{r['outliers']}" + (f" ({r['marginal']} marginal)" if r["marginal"] else "")
        if r["candidates"] != r["outliers"]:
            count += f" (of {r['candidates']} candidates)"
        lines.append(f"| {r['layer']} | {count} | {r['status']} | {_cell(r['alpha'])} | {_cell(r['ww_spikes'])} | "
                     f"{_cell(r['ww_alpha'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlp-steps", type=int, default=2000)
    parser.add_argument("--transformer-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import weightwatcher  # noqa: F401
        with_ww = True
    except ImportError:
        with_ww = False
        print("weightwatcher is not installed (pip install -e '.[bench]'): spikelearn's columns only")
    rows = compare(trained_layers(args.mlp_steps, args.transformer_steps, args.seed), with_ww)
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
