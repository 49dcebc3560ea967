"""Composition shared by the experiment scripts: build module + data + trainer, run, write CSV, show progress.

Nothing here computes a quantity of the theory: runs go through :class:`~spikelearn.module.TwoLayerModule`,
:class:`~spikelearn.data.GaussianDataModule` and a Lightning ``Trainer``; spectra come from
:class:`spikelearn.callbacks.SpectrumMonitor` (or, where only a single fit is needed, from the functional
engine :mod:`spikelearn.functional`); predictions come from :mod:`spikelearn.functional.theory`.
"""

from __future__ import annotations

import argparse
import math
import logging
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402

from spikelearn.callbacks import SpectrumMonitor  # noqa: E402
from spikelearn.data import GaussianDataModule  # noqa: E402
from spikelearn.module import TwoLayerModule  # noqa: E402

__all__ = [
    "KeepWeights",
    "ReadoutProbe",
    "RunConfig",
    "base_parser",
    "draw_law_boundaries",
    "finish_figure",
    "make_trainer",
    "progress",
    "quiet",
    "read_csv",
    "run",
    "spectrum_monitor",
    "write_csv",
]

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]


def quiet() -> None:
    """Silence Lightning's per-run banners and the warnings a 2-step full-batch run always triggers."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*outside the theory.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")


@dataclass
class RunConfig:
    """One training run: ``model`` and ``data`` are :class:`TwoLayerModule`'s and :class:`GaussianDataModule`'s own
    keyword arguments (nothing is re-declared here, so every option of theirs is available and validated by them);
    ``input_dim`` defaults to ``model["width"]`` on both sides and ``data["batch_size"]`` to the width too."""

    model: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    steps: int = 2
    precision: str = "32-true"

    def build(self) -> tuple[TwoLayerModule, GaussianDataModule]:
        width = self.model.get("width", 256)
        d = self.model.get("input_dim", self.data.get("input_dim", width))
        module = TwoLayerModule(**{"input_dim": d, **self.model})
        data = GaussianDataModule(**{"input_dim": d, "batch_size": width, **self.data})
        return module, data


def make_trainer(steps: int, callbacks: Sequence[Callback] = (), precision: str = "32-true") -> L.Trainer:
    """A quiet single-device Trainer for ``steps`` full-batch steps (no logger, no checkpoints)."""
    return L.Trainer(
        max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, use_distributed_sampler=False, precision=precision,
        callbacks=list(callbacks), accelerator="auto", devices=1,
    )


def spectrum_monitor(dirpath: str | os.PathLike[str], **kwargs: Any) -> SpectrumMonitor:
    """``SpectrumMonitor`` writing ``spectra.jsonl`` into ``dirpath``; no histograms or figures unless asked."""
    options = {"histograms": False, "save_figures": False, **kwargs}
    return SpectrumMonitor(dirpath=dirpath, **options)


def run(config: RunConfig, callbacks: Sequence[Callback] = ()) -> tuple[L.Trainer, TwoLayerModule, GaussianDataModule]:
    """Train ``config.steps`` steps with the given callbacks; returns the trainer, module and data module."""
    module, data = config.build()
    trainer = make_trainer(config.steps, callbacks, config.precision)
    trainer.fit(module, data)
    return trainer, module, data


class KeepWeights(Callback):
    """Keep copies of ``W_t`` in memory for chosen steps (step 0 included when asked): ``self.weights[t]``."""

    def __init__(self, steps: Iterable[int], param: str = "W") -> None:
        self.steps, self.param = set(steps), param
        self.weights: dict[int, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if 0 in self.steps:
            self.weights[0] = pl_module.get_parameter(self.param).detach().clone()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step in self.steps:
            self.weights[trainer.global_step] = pl_module.get_parameter(self.param).detach().clone()


class ReadoutProbe(Callback):
    """Fit the module's ridge readout (:meth:`TwoLayerModule.fit_readout`) after chosen steps: ``self.history``."""

    def __init__(self, steps: Iterable[int]) -> None:
        self.steps = set(steps)
        self.history: list[dict[str, float]] = []

    def _probe(self, trainer: L.Trainer, pl_module: TwoLayerModule) -> None:
        if trainer.global_step in self.steps:
            self.history.append({"step": trainer.global_step, **pl_module.fit_readout(trainer.datamodule)})

    def on_train_start(self, trainer: L.Trainer, pl_module: TwoLayerModule) -> None:
        self._probe(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: TwoLayerModule, *args: Any) -> None:
        self._probe(trainer, pl_module)


def progress(items: Sequence[T], desc: str, enabled: bool = True) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr (the CLI's library) over a grid; ``enabled=False`` iterates silently."""
    from rich.console import Console
    from rich.progress import track

    yield from track(items, description=desc, disable=not enabled, console=Console(stderr=True))


def read_csv(
    path: str | os.PathLike[str],
    *,
    ints: Sequence[str] = (),
    floats: Sequence[str] = (),
    bools: Sequence[str] = (),
    float_lists: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Read rows written by :func:`write_csv` back with pandas, typing the named columns.

    An empty cell is ``None`` (``False`` in a ``bools`` column); ``float_lists`` cells are ``;``-joined floats;
    every other column stays a string, as written.
    """
    import pandas as pd

    columns = set(pd.read_csv(path, nrows=0).columns)
    typed = {**{k: "Int64" for k in ints}, **{k: "float64" for k in floats}, **{k: "boolean" for k in bools}}
    frame = pd.read_csv(
        path,
        dtype=defaultdict(lambda: str, {k: v for k, v in typed.items() if k in columns}),
        keep_default_na=False,
        na_values={k: [""] for k in typed if k in columns},
    )
    for key in bools:
        if key in columns:
            frame[key] = frame[key].fillna(False)
    for key in float_lists:
        if key in columns:
            frame[key] = frame[key].map(_float_list)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for row in rows:  # numpy scalars to Python numbers; typed columns absent from the file are None
        for key in (*ints, *floats, *bools, *float_lists):
            value = row.get(key)
            row[key] = value.item() if hasattr(value, "item") else value
    return rows


def _float_list(cell: str) -> list[float]:
    return [float(x) for x in cell.split(";")] if cell else []


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write dict rows as CSV with pandas (columns: union of keys in first-seen order).

    Lists are joined with ``;``; floats are written with 6 significant digits, ``nan`` and ``None`` as an empty cell
    (``inf`` stays ``inf``, e.g. ``p*`` of an even link).
    """
    import pandas as pd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def joined(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return ";".join("" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in value)
        return value

    frame = pd.DataFrame([{k: joined(v) for k, v in row.items()} for row in rows])
    frame.to_csv(path, index=False, float_format="%.6g", na_rep="")
    return path


def base_parser(name: str, description: str, threads: int | None = None) -> argparse.ArgumentParser:
    """Flags every script shares: ``--out``, ``--quick``, ``--seeds``, ``--threads``, ``--no-progress``, ``--precision``.

    ``threads`` is the script's default torch thread count (``None``: torch's own). Grids of many small runs are
    faster on one thread: at N <= 1024 a multi-threaded QR/eigh in the spectral engine mostly waits on its
    siblings, and on a shared machine it can be 10x slower than one thread.
    """
    parser = argparse.ArgumentParser(prog=name, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs") / name, help="output folder (CSV + PNG)")
    parser.add_argument("--quick", action="store_true", help="toy size (seconds; used by the tests)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per grid point (default: script's)")
    parser.add_argument("--threads", type=int, default=threads,
                        help="torch CPU threads (1 with --quick; unset: torch's default)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "64-true"], help="Trainer precision")
    parser.add_argument("--dpi", type=int, default=80, help="PNG resolution")
    return parser


def setup(args: argparse.Namespace) -> float:
    """Apply the shared flags (threads, quiet logs, output folder); returns the start time."""
    quiet()
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    args.out.mkdir(parents=True, exist_ok=True)
    return time.perf_counter()


def draw_law_boundaries(ax: Any, k_max: int = 8, **style: Any) -> None:
    r"""Draw the theory's count boundaries :math:`\alpha_2 = k(1/2 - \alpha_1)`, ``k = 1..k_max``, on (α1, α2) axes."""
    import numpy as np

    a1 = np.linspace(0.0, 0.5, 200)
    options = {"color": "k", "lw": 0.9, "ls": "--", **style}
    for k in range(1, k_max + 1):
        ax.plot(a1, k * (0.5 - a1), **options)
    ax.set_xlim(0.0, 0.5)
    ax.set_ylim(0.0, 0.5)


def finish_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 80) -> Path:
    """Save a matplotlib figure as PNG (256-colour palette, to keep repository figures small) and release it."""
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    try:
        from PIL import Image

        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)
    except ImportError:  # Pillow comes with matplotlib; without it the plain PNG stays
        pass
    try:
        import matplotlib.pyplot as plt

        plt.close(fig)
    except Exception:  # noqa: BLE001 - a Figure made without pyplot has nothing to close
        pass
    return path


def log_slope(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of log y on log x and its standard error (``nan`` when undetermined)."""
    import numpy as np

    x = np.log([p[0] for p in points])
    y = np.log([max(p[1], 1e-300) for p in points])
    if len(set(x.tolist())) < 2:
        return math.nan, math.nan
    A = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    dof = len(x) - 2
    if dof <= 0:
        return float(coef[0]), math.nan
    resid = y - A @ coef
    stderr = math.sqrt(float(resid @ resid) / dof / float(((x - x.mean()) ** 2).sum()))
    return float(coef[0]), stderr
