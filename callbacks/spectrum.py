r"""``SpectrumMonitor``: the spectral film of a run, logged to TensorBoard and ``spectra.jsonl``.

After each chosen step ``t`` (step 0 in ``on_train_start``) the monitor passes each watched weight ``W_t``
(``(N, d)``, on its own device) to its :class:`~spikelearn.functional.engine.SpectralTracker` and logs the
record; it computes nothing itself. For a module that provides the two-layer theory's inputs
(:class:`~spikelearn.callbacks.TwoLayerTheory`) it also passes ``a`` (``(N,)``), the target directions ``B``
(``(d, r)``) and :math:`\alpha_1..\alpha_t`; the tracker keeps :math:`W_{t-1}^\top Q_a` and :math:`W_0^\top Q_a`
(``(d, K+1)``), never a copy of ``W``. For any other module the theory fields are ``null`` and ``theory_note`` says
why.

Where it goes:

* ``spectra.jsonl`` (in the logger's ``log_dir``, or ``dirpath``): one JSON line per analysed step and
  weight: ``step``, ``eta``, ``param``, ``N``, ``d``, ``aspect_ratio``, every
  key of :data:`~spikelearn.functional.record.FIELDS` (``schema`` gives their version), ``analysis_seconds`` and,
  under DDP, ``rank``.
* every logger: scalars ``spectrum/<param>/...`` (counts, edges, top values, outliers, alignments,
  order strengths) at step ``t``.
* TensorBoard loggers: histogram ``spectrum/<param>/singular_values`` of the full spectrum (fixed-width
  linear bins), figure ``spectrum/<param>/figure`` on its cadence (also saved as PNG under ``figures/``).

Under DDP (``trainer.world_size > 1``) ``W_t`` is the same on every rank, so the watched weights are spread over
the ranks: weight ``i`` of ``params`` is analysed by rank ``i % world_size``, which keeps its tracker and its
products. Each rank sends rank zero its records (with ``rank``, the rank that analysed it), the histogram's
buckets and the figure's values (never ``W``); rank zero writes and logs them once, in the order of ``params``, as a
1-process run does. A checkpoint gathers every rank's trackers, keyed by weight name, so a run resumes under any
world size.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
import torch.distributed
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from ._cadence import Cadence
from ._common import (
    check_params,
    normalize_params,
    run_directory,
    target_directions,
    tensorboard_writers,
    two_layer,
)
from ._io import append_record, read_records, rewrite_records
from spikelearn.functional._measure import NonFiniteError, bounded_threads
from spikelearn.functional.activations import activation_coefficients
from spikelearn.functional.density import SpectralDensity, singular_value_density
from spikelearn.functional.engine import Analysis, SpectralTracker
from spikelearn.functional.inputs import EngineConfig, TheoryInputs
from spikelearn.functional.record import scalars as record_scalars
from spikelearn.functional.rmt import mp_bulk_edge
from spikelearn.functional.spectral import singular_values_full

__all__ = ["RECORD_FILENAME", "SpectrumMonitor", "record_scalars"]

RECORD_FILENAME = "spectra.jsonl"
"""Name of the run record in the run directory."""

DEFAULT_ANALYSES = Cadence(per_decade=4)
"""Analysed steps when ``analyses`` is not given: 0, 1, 2, 3, 6, 10, 18, 32, 56, 100, … and the last."""

DEFAULT_HISTOGRAMS = Cadence(per_decade=1)
"""Histogram steps when ``histograms`` is true: 0, 1, 10, 100, … and the last."""

DEFAULT_FIGURES = Cadence(per_decade=1)
"""Figure steps when ``figures`` is true: 0, 1, 10, 100, … and the last."""

_EXACT_BELOW = 256  # up to this rank the exact spectrum costs less than its estimate

_NOT_TWO_LAYER = (
    "{model} does not provide the two-layer theory's inputs (a, a_kind, activation, schedule, eta: see "
    "spikelearn.callbacks.TwoLayerTheory), so the theory's predictions, deflation, order-k fit and left alignments "
    "are null"
)


class _Histogram(NamedTuple):
    """Fixed-width linear buckets of a spectrum; the fields are ``SummaryWriter.add_histogram_raw``'s arguments."""

    min: float
    max: float
    num: float
    sum: float
    sum_squares: float
    bucket_limits: list[float]
    bucket_counts: list[float]


class _Published(NamedTuple):
    """What rank zero needs to write and log one weight at one step: small, plain, picklable (never ``W``)."""

    record: dict[str, Any]
    histogram: _Histogram | None  # when the histogram is due and a TensorBoard logger takes it
    figure_values: list[float] | None  # the spectrum (or its representative values) when the figure is due


def _fields(name: str, value: dict[str, Any], cls: type) -> dict[str, Any]:
    """``value``, or a ``ValueError`` naming ``name`` and ``cls``'s fields when it holds another key."""
    allowed = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ValueError(f"`{name}` takes {', '.join(allowed)}; got {', '.join(map(str, unknown))}.")
    return value


def _cadence(name: str, value: Cadence | bool | None, default: Cadence) -> Cadence | None:
    """A cadence argument: a :class:`Cadence` (or a mapping of its fields), ``True``/``None`` for the default,
    ``False`` for none."""
    if value is None or value is True:
        return dataclasses.replace(default)  # a copy: a cadence caches its next step
    if value is False:
        return None
    if isinstance(value, dict):
        value = Cadence(**_fields(name, value, Cadence))
    if not isinstance(value, Cadence):
        raise ValueError(f"`{name}` must be a Cadence (first_k, every_n_steps, per_decade, last_step) or true/false, "
                         f"got {value!r}.")
    return value


class SpectrumMonitor(Callback):
    """Analyse the spectrum of watched weights after chosen steps; log to TensorBoard and ``spectra.jsonl``.

    Under DDP the watched weights are spread over the ranks (weight ``i`` on rank ``i % world_size``); their records
    are gathered to rank zero and written once, as in a 1-process run.

    Args:
        params: name(s) of 2-D parameters to watch; default ``"W"`` for a module that provides the two-layer theory's
            inputs (:class:`~spikelearn.callbacks.TwoLayerTheory`), required for any other module.
        dirpath: directory of ``spectra.jsonl`` and ``figures/``; default the logger's ``log_dir``
            (``default_root_dir`` without a logger).
        analyses: the analysed steps (a :class:`~spikelearn.callbacks.Cadence`, in a config a mapping of its fields:
            ``first_k``, ``every_n_steps``, ``per_decade``, ``last_step``); default 4 per decade and the last step
            (0, 1, 2, 3, 6, 10, 18, 32, 56, 100, …). Step 0 is always analysed.
        histograms: analysed steps whose full spectrum is logged as a TensorBoard histogram; ``true`` (default):
            step 0, the decades and the last step; ``false``: none. It costs ~10 % of a GD step at N = 4096.
        figures: analysed steps that get the spectrum figure (TensorBoard image, and a PNG with ``save_figures``);
            ``false`` (default): none during training, since a figure costs more than 100 steps of a small MLP
            (``spikelearn report RUN_DIR`` draws the whole film from the record afterwards); ``true``: step 0, the
            decades and the last step.
        engine: how the engine measures (:class:`~spikelearn.functional.inputs.EngineConfig`: ``k``, ``max_order``,
            ``quantile``, ``outlier_rule`` by name, ``tol``, ``max_iters``, ``block_size``, ``seed``, ``threads``: the
            CPU threads of the analysis and of the histogram's density estimate, training's own count untouched;
            ``comparator``: the finite-N comparator, on by default).
        log_top_k: how many top values / outliers get their own scalar tag.
        histogram_bins_per_edge: histogram bin width is ``(1 + √c) / histogram_bins_per_edge`` (linear bins of
            fixed width, aligned at 0, so steps are comparable).
        save_figures: also save each figure as ``figures/spectrum_<param>_step<t>.png``.
        exact_spectrum: histograms and figures from the exact full spectrum (a float64 ``O(min(N,d)^3)``
            eigensolve) instead of the default stochastic-Lanczos estimate (32 products with ``W``; the engine's
            converged top values exact). Ranks up to 256 always use the exact one.

    Attributes:
        history: the records written to ``spectra.jsonl``, in order (restored from it on resume); on rank zero only.
        record_path: the ``spectra.jsonl`` path (set at ``setup``).
    """

    def __init__(
        self,
        params: str | Sequence[str] | None = None,
        dirpath: str | os.PathLike[str] | None = None,
        analyses: Cadence | None = None,
        histograms: Cadence | bool = True,
        figures: Cadence | bool = False,
        engine: EngineConfig | None = None,
        log_top_k: int = 8,
        histogram_bins_per_edge: int = 40,
        save_figures: bool = True,
        exact_spectrum: bool = False,
    ) -> None:
        self.params = normalize_params(params)
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.analyses = _cadence("analyses", analyses, DEFAULT_ANALYSES)
        self.histograms = _cadence("histograms", histograms, DEFAULT_HISTOGRAMS)
        self.figures = _cadence("figures", figures, DEFAULT_FIGURES)
        if isinstance(engine, dict):
            engine = EngineConfig(**_fields("engine", engine, EngineConfig))
        if not isinstance(engine, (EngineConfig, type(None))):
            raise ValueError(f"`engine` must be an EngineConfig or a mapping of its fields, got {engine!r}.")
        self.engine = engine or EngineConfig()
        for name, value, low in (("log_top_k", log_top_k, 0), ("histogram_bins_per_edge", histogram_bins_per_edge, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
        self.log_top_k, self.histogram_bins_per_edge = log_top_k, histogram_bins_per_edge
        self.save_figures, self.exact_spectrum = bool(save_figures), bool(exact_spectrum)
        self.history: list[dict[str, Any]] = []
        self.record_path: Path | None = None
        self._max_steps = -1  # trainer.max_steps, set in setup: the last step of every cadence with last_step
        self._state_key: str | None = None
        self._names: tuple[str, ...] = ()
        self._mu: list[float] | None = None
        # one engine per watched weight; it owns the warm start and the cached products W_t^T Q_a, W_0^T Q_a
        self._trackers: dict[str, SpectralTracker] = {}
        self._restored: dict[str, Any] | None = None
        self._last_step = -1
        # set in setup: this process's rank, the world size, whether records are gathered (a process group exists)
        # and the weights this rank analyses (all of them in a 1-process run)
        self._rank, self._world_size, self._sharded = 0, 1, False
        self._owned: tuple[str, ...] = ()
        self._tensorboard = False

    # ================================================================== hooks: when
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._names = check_params(pl_module, self.params, type(self).__name__)
        self._max_steps = trainer.max_steps
        # trainer.log_dir broadcasts from rank zero: resolve it here, on every rank, never in rank-zero code
        self.record_path = run_directory(trainer, self.dirpath) / RECORD_FILENAME
        self._rank, self._world_size = trainer.global_rank, trainer.world_size
        self._sharded = self._world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
        if self._sharded:  # round robin: weight i on rank i % world_size
            self._owned = self._names[self._rank::self._world_size]
        else:  # one process (or no process group to gather over): rank zero analyses every weight
            self._owned = self._names if trainer.is_global_zero else ()
        # the owner computes the histogram's buckets when rank zero will log them (every rank has the same loggers)
        self._tensorboard = any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers)
        module = two_layer(pl_module)
        if module is not None and self._mu is None:
            self._mu = activation_coefficients(module.activation, self.engine.max_order + 1).tolist()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # every rank: under DDP each analyses its share and all of them meet in the gather
        assert self.record_path is not None  # set in setup
        if trainer.is_global_zero:
            self.record_path.parent.mkdir(parents=True, exist_ok=True)
        step = trainer.global_step
        self._last_step = step
        if step == 0:
            if trainer.is_global_zero:
                if self.record_path.exists() and self.record_path.stat().st_size:
                    rank_zero_warn(f"SpectrumMonitor: replacing the record of an earlier run at {self.record_path}.")
                rewrite_records(self.record_path, [])
            self.history = []
            self._trackers = {}
            self._analyse(trainer, pl_module, 0)
        else:
            self._resume_record(trainer, step, pl_module)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        # keep W_{t-1}ᵀ Q_a ((d, K+1), never W) for the order-k fit of a step that will be analysed, unless the
        # tracker already holds it from analysing step t-1
        step = trainer.global_step
        if not self._analysed(step + 1):  # the cheap test first: every step
            return
        module = two_layer(pl_module)
        if module is None:
            return
        for name in self._owned:  # this rank's share
            tracker = self._tracker(name)
            if tracker.state.products_step != step:
                tracker.remember(_measurable(pl_module.get_parameter(name).detach())[0], step, module.a.detach())

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._last_step:
            return  # no optimizer step happened (gradient accumulation): the same on every rank
        self._last_step = step
        if self._analysed(step):
            self._analyse(trainer, pl_module, step)

    # ================================================================== what (the engine) and bookkeeping
    def _analyse(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        """Analyse this rank's share at ``step``; rank zero writes and logs every weight, in the order of ``params``.

        Under DDP every rank comes here at the same steps (the cadence is the same everywhere) and meets the others
        in two collectives, even when it owns no weight: first whether any rank failed (then every rank raises,
        instead of the others waiting in the gather for ever), then the gather of the analyses to rank zero.
        """
        if not self._sharded:  # one process: analyse, write and log each weight in turn
            for name in self._owned:
                self._publish(trainer, self._measure(trainer, pl_module, name, step))
            return
        share: list[_Published] = []
        failure: Exception | None = None
        try:
            share = [self._measure(trainer, pl_module, name, step) for name in self._owned]
        except Exception as err:  # noqa: BLE001 - re-raised below, once every rank knows
            failure = err
        self._agree_on_failure(step, failure)
        shares: list[list[_Published]] | None = [[] for _ in range(self._world_size)] if self._rank == 0 else None
        torch.distributed.gather_object(share, shares, dst=0)
        if shares is None:
            return
        by_name = {analysis.record["param"]: analysis for gathered in shares for analysis in gathered}
        for name in self._names:
            self._publish(trainer, by_name[name])

    def _agree_on_failure(self, step: int, failure: Exception | None) -> None:
        """Every rank learns whether one failed; the failed rank re-raises its error, the others raise its message."""
        failures: list[tuple[str, str] | None] = [None] * self._world_size
        torch.distributed.all_gather_object(
            failures, None if failure is None else (type(failure).__name__, str(failure))
        )
        if failure is not None:
            raise failure
        for rank, failed in enumerate(failures):
            if failed is not None:
                kind, message = failed
                where = f"raised on rank {rank}, which analyses {list(self._names[rank::self._world_size])}"
                if kind == "ValueError":  # stays one: the CLI reports it as a user error, in one line
                    raise ValueError(f"{message} ({where})")
                raise RuntimeError(f"SpectrumMonitor at step {step}: {kind}: {message} ({where})")

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str, step: int) -> _Published:
        """Analyse one weight on this rank: its record, and the histogram's buckets and figure's values when due."""
        module = two_layer(pl_module)
        W, notes = _measurable(pl_module.get_parameter(name).detach())  # (N, d), measured where it lives
        if module is None:
            notes.insert(0, _NOT_TWO_LAYER.format(model=type(pl_module).__name__))
        start = time.perf_counter()
        try:
            analysis = self._tracker(name).update(W, step, self._theory(trainer, module, W, step))
        except NonFiniteError as err:
            raise ValueError(f"SpectrumMonitor: parameter {name!r} at step {step} is not finite: {err}") from err
        elapsed = time.perf_counter() - start
        analysis = analysis._replace(notes=(*notes, *analysis.notes))
        N, d = W.shape
        record = analysis.record(
            step=step, eta=module.eta(step) if module is not None and step > 0 else None, param=name, N=N, d=d,
            aspect_ratio=N / d, analysis_seconds=elapsed, **({"rank": self._rank} if self._world_size > 1 else {}),
        )
        histogram_due = self.histograms is not None and self.histograms.due(step, self._max_steps) and self._tensorboard
        figure_due = self.figures is not None and self.figures.due(step, self._max_steps)
        spectrum = None
        if histogram_due or figure_due:
            with bounded_threads(self.engine.threads, W.device):  # the density estimate: small calls, as the engine's
                spectrum = self._spectrum(W, analysis)
        figure_values = None
        if figure_due:
            values = spectrum.representative_values() if isinstance(spectrum, SpectralDensity) else spectrum
            figure_values = values.detach().cpu().to(torch.float64).tolist()  # (min(N, d),)
        return _Published(record, self._histogram(record, spectrum) if histogram_due else None, figure_values)

    def _theory(self, trainer: L.Trainer, module: Any, W: Tensor, step: int) -> TheoryInputs:
        """What the two-layer theory needs, from the module (``a``, the schedule's exponents) and the data (``B``)."""
        B = target_directions(trainer, W.shape[1])
        B = None if B is None else B.to(W.device)
        if module is None:
            return TheoryInputs(B=B)
        return TheoryInputs(a=module.a.detach(), alphas=module.schedule.exponents(step), a_kind=module.a_kind,
                            activation_coefficients=self._mu, B=B)

    def _tracker(self, name: str) -> SpectralTracker:
        if name not in self._trackers:
            self._trackers[name] = SpectralTracker(self.engine)
        return self._trackers[name]

    def _spectrum(self, W: Tensor, analysis: Analysis) -> Tensor | SpectralDensity:
        """The full spectrum (``exact_spectrum``) or its SLQ estimate with the engine's converged top values exact."""
        if self.exact_spectrum or min(W.shape) <= _EXACT_BELOW:
            return singular_values_full(W)  # (min(N, d),)
        vectors = analysis.spectrum.krylov.warm_vectors  # (d, p + WARM_EXTRA), in the order of the values
        k = min(vectors.shape[1], analysis.spectrum.values.shape[0])
        return singular_value_density(W, top_values=analysis.spectrum.values[:k].clone(), top_vectors=vectors[:, :k])

    def _histogram(self, record: dict[str, Any], spectrum: Tensor | SpectralDensity) -> _Histogram:
        """Fixed-width bins over the bulk, up to the cut: the bulk fills the chart; outliers are their own scalars."""
        width = mp_bulk_edge(record["aspect_ratio"]) / self.histogram_bins_per_edge
        top = max(float(record.get("cut") or 0.0), float(record["singular_values"][min(1, len(record["singular_values"]) - 1)]))
        edges = np.arange(0.0, (math.floor(top / width) + 2) * width, width)
        if isinstance(spectrum, SpectralDensity):
            counts = spectrum.histogram(torch.from_numpy(edges), integer=True, fold_outside=False)
            total = float(counts.sum())
            mean_sq = spectrum.trace(torch.square)
        else:
            values = spectrum.detach().cpu().to(torch.float64)
            counts = torch.histogram(values[values < edges[-1]], bins=torch.from_numpy(edges)).hist
            total, mean_sq = float(counts.sum()), float(values.square().sum())
        return _Histogram(
            min=0.0, max=float(edges[-1]), num=total,
            sum=float((counts * torch.from_numpy(0.5 * (edges[1:] + edges[:-1]))).sum()), sum_squares=mean_sq,
            bucket_limits=edges[1:].tolist(), bucket_counts=counts.tolist(),
        )

    def _analysed(self, step: int) -> bool:
        return self.analyses.due(step, self._max_steps)

    def _publish(self, trainer: L.Trainer, analysis: _Published) -> None:
        """Rank zero: append the record to ``spectra.jsonl`` and ``history``, and log it."""
        assert self.record_path is not None
        append_record(self.record_path, analysis.record)
        self.history.append(analysis.record)
        self._log(trainer, analysis)

    # ================================================================== where
    def _log(self, trainer: L.Trainer, analysis: _Published) -> None:
        """Rank zero: the record's scalars to every logger; histogram and figure (when due) to TensorBoard."""
        record = analysis.record
        step, name = record["step"], record["param"]
        scalars = record_scalars(record, self.log_top_k)
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
        writers = tensorboard_writers(trainer)
        if analysis.histogram is not None:
            for writer in writers:
                writer.add_histogram_raw(
                    f"spectrum/{name}/singular_values", **analysis.histogram._asdict(), global_step=step
                )
        if analysis.figure_values is None:
            return
        from spikelearn.plotting import render_figure, spectrum_figure, write_png

        pixels = render_figure(spectrum_figure(analysis.figure_values, record), dpi=110)  # (H, W, 4): one draw
        if self.save_figures:
            assert self.record_path is not None
            folder = self.record_path.parent / "figures"
            folder.mkdir(exist_ok=True)
            write_png(folder / f"spectrum_{name}_step{step:06d}.png", pixels)
        for writer in writers:
            writer.add_image(f"spectrum/{name}/figure", pixels[..., :3], global_step=step, dataformats="HWC")

    # ================================================================== resume
    def _resume_record(self, trainer: L.Trainer, step: int, pl_module: L.LightningModule) -> None:
        """Continue the record of the checkpointed run up to ``step``; drop what came after it.

        Rank zero rewrites the record; every rank loads the trackers of its own share (keyed by weight name, so a
        checkpoint of any world size resumes under any other).
        """
        assert self.record_path is not None
        if trainer.is_global_zero:
            source = Path(self._restored["record_path"]) if self._restored else self.record_path
            if source.exists():
                kept = [r for r in read_records(source, drop_truncated=True) if r.get("step", -1) <= step]
            else:
                kept = []
                rank_zero_warn(
                    f"SpectrumMonitor: resuming at step {step} but the earlier record {source} is gone; "
                    f"{self.record_path} starts at step {step + 1}."
                )
            rewrite_records(self.record_path, kept)
            self.history = kept
        if not self._restored:
            return
        self._trackers = {}
        for name, state in (self._restored.get("trackers") or {}).items():
            if name in self._owned:
                self._tracker(name).load_state_dict(state, pl_module.device)

    @property
    def state_key(self) -> str:
        # several instances (other weights, other directories) can share one Trainer and one checkpoint; Lightning
        # asks for it several times per step, so it is built once
        if self._state_key is None:
            self._state_key = self._generate_state_key(
                params=self.params, dirpath=None if self.dirpath is None else str(self.dirpath))
        return self._state_key

    def state_dict(self) -> dict[str, Any]:
        """The record's path, the last step and every watched weight's tracker state (keyed by weight name).

        Under DDP this gathers the ranks' trackers to rank zero (whose state the checkpoint keeps), so it must be
        called on every rank, as ``Trainer.save_checkpoint`` does (its ``dump_checkpoint`` calls every callback's
        ``state_dict`` on every rank, and it ends in a barrier anyway).
        """
        # the engines' memory travels with the checkpoint, so a resumed run's records equal an uninterrupted run's
        trackers = {name: tracker.state_dict() for name, tracker in self._trackers.items()}
        if self._sharded and torch.distributed.is_initialized():
            shares: list[dict[str, Any]] | None = [{} for _ in range(self._world_size)] if self._rank == 0 else None
            torch.distributed.gather_object(trackers, shares, dst=0)
            if shares is not None:
                gathered = {name: state for share in shares for name, state in share.items()}
                trackers = {name: gathered[name] for name in self._names if name in gathered}
        return {
            "record_path": None if self.record_path is None else str(self.record_path),
            "last_step": self._last_step,
            "trackers": trackers,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict) if state_dict.get("record_path") else None


def _measurable(W: Tensor) -> tuple[Tensor, list[str]]:
    """``W`` itself when float32 or float64; a float32 copy of bf16/fp16 weights, with the note that says so."""
    if W.dtype in (torch.float32, torch.float64):
        return W, []
    return W.float(), [f"{W.dtype} weights analysed as a float32 copy"]
