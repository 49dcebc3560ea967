r"""``SpectrumMonitor``: the spectral film of a run, logged to TensorBoard and ``spectra.jsonl``.

After each chosen step ``t`` (step 0 in ``on_train_start``) the monitor passes each watched weight ``W_t``
(``(N, d)``, on its own device) to :func:`spikelearn.functional.spectral.analyze_snapshot` and logs the
result; it computes nothing itself. For spikelearn's two-layer module it also passes ``a`` (``(N,)``), the
target directions ``B`` (``(d, r)``), ``W_{t-1}`` (order-k fit of the update), ``W_0`` (finite-N
prediction) and :math:`\alpha_1..\alpha_t` (asymptotic prediction); for any other module the theory fields
are ``null`` and ``theory_note`` says why.

Where it goes:

* ``spectra.jsonl`` (in the logger's ``log_dir``, or ``dirpath``): one JSON line per analysed step and
  weight: ``step``, ``eta``, ``param``, ``N``, ``d``, ``aspect_ratio``, every
  :class:`~spikelearn.functional.spectral.SnapshotSummary` field, ``analysis_seconds`` and, under DDP, ``rank``.
* every logger: scalars ``spectrum/<param>/...`` (counts, edges, top values, outliers, alignments,
  order strengths) at step ``t``.
* TensorBoard loggers: histogram ``spectrum/<param>/singular_values`` of the full spectrum (fixed-width
  linear bins), figure ``spectrum/<param>/figure`` on its cadence (also saved as PNG under ``figures/``).

Under DDP (``trainer.world_size > 1``) ``W_t`` is the same on every rank, so the watched weights are spread over
the ranks: weight ``i`` of ``params`` is analysed by rank ``i % world_size``, which keeps its tracker and its
``W_{t-1}``. Each rank sends rank zero its records (with ``rank``, the rank that analysed it), the histogram's
buckets and the figure's values (never ``W``); rank zero writes and logs them once, in the order of ``params``, as a
1-process run does. A checkpoint gathers every rank's trackers, keyed by weight name, so a run resumes under any
world size.
"""

from __future__ import annotations

import functools

import math
import os
import time
import warnings
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
from spikelearn.functional.activations import activation_coefficients
from spikelearn.functional.rmt import mp_bulk_edge
from spikelearn.functional.density import SpectralDensity, singular_value_density
from spikelearn.functional.spectral import OUTLIER_QUANTILE, SpectralTracker, TheoryInputs, singular_values_full

__all__ = ["RECORD_FILENAME", "SpectrumMonitor", "record_scalars"]

RECORD_FILENAME = "spectra.jsonl"
"""Name of the run record in the run directory."""

DEFAULT_PER_DECADE = 4
"""Analyses per decade of steps when neither ``every_n_steps`` nor ``per_decade`` is given."""

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


class _Analysis(NamedTuple):
    """What rank zero needs to write and log one weight at one step: small, plain, picklable (never ``W``)."""

    record: dict[str, Any]
    histogram: _Histogram | None  # when the histogram is due and a TensorBoard logger takes it
    figure_values: list[float] | None  # the spectrum (or its representative values) when the figure is due
    locations: list[float] | None  # BGN predicted locations, for the figure


def _on_log_grid(step: int, per_decade: int) -> bool:
    """``step`` is one of ``round(10^(i / per_decade))``, ``i >= 0`` (as :class:`Cadence` after ``first_k``)."""
    return step >= 1 and step in _log_grid(per_decade)


@functools.lru_cache(maxsize=16)
def _log_grid(per_decade: int) -> Cadence:
    return Cadence(0, 1, per_decade)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def record_scalars(record: dict[str, Any], top_k: int = 8) -> dict[str, float]:
    """TensorBoard scalars of one record, under ``spectrum/<param>/`` (null fields are skipped).

    Tags: ``outliers``, ``outliers_marginal``, ``outliers_deflated``, ``predicted_outliers``,
    ``predicted_outliers_deflated``, ``predicted_outliers_finite_n``, ``bulk_edge`` (fitted), ``bulk_edge_mp``,
    ``bulk_edge_theory``, ``top_bulk_value``, ``cut``, ``edge_scale``, ``margin``,
    ``noise_scale``, ``eta``, ``singular_value_<i>`` (``i < top_k``), ``outlier_value_<i>`` and
    ``outlier_margin_<i>``, ``alignment/beta_<j>`` (energy of ``β_j`` captured by the outliers),
    ``alignment/outlier_<i>/beta_<j>``, ``alignment/baseline``, ``order_strength/k<k>``,
    ``order_alignment/k<k>/beta_<j>``, ``analysis_seconds``.

    Example:
        >>> record_scalars({"param": "W", "outliers": 1, "captured_energy": [0.9], "predicted_outliers": None})
        {'spectrum/W/outliers': 1.0, 'spectrum/W/alignment/beta_0': 0.9}
    """
    prefix = f"spectrum/{record['param']}/"
    out: dict[str, float] = {}

    def put(tag: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            out[prefix + tag] = number

    for key in (
        "outliers", "outliers_marginal", "outliers_deflated", "predicted_outliers", "predicted_outliers_deflated",
        "predicted_outliers_finite_n", "bulk_edge", "bulk_edge_mp", "bulk_edge_theory", "top_bulk_value", "cut",
        "edge_scale", "margin", "noise_scale", "eta",
    ):
        put(key, record.get(key))
    for i, value in enumerate((record.get("singular_values") or [])[:top_k]):
        put(f"singular_value_{i}", value)
    for i, value in enumerate((record.get("outlier_values") or [])[:top_k]):
        put(f"outlier_value_{i}", value)
    for i, value in enumerate((record.get("outlier_margins") or [])[:top_k]):
        put(f"outlier_margin_{i}", value)
    for j, value in enumerate(record.get("captured_energy") or []):
        put(f"alignment/beta_{j}", value)
    for i, row in enumerate((record.get("alignment") or [])[:top_k]):
        for j, value in enumerate(row):
            put(f"alignment/outlier_{i}/beta_{j}", value)
    put("alignment/baseline", record.get("captured_energy_baseline"))
    for k, value in enumerate(record.get("order_strengths") or []):
        put(f"order_strength/k{k}", value)
    for k, row in enumerate(record.get("order_alignment") or []):
        for j, value in enumerate(row):
            put(f"order_alignment/k{k}/beta_{j}", value)
    put("analysis_seconds", record.get("analysis_seconds"))
    return out


class SpectrumMonitor(Callback):
    """Analyse the spectrum of watched weights after chosen steps; log to TensorBoard and ``spectra.jsonl``.

    Under DDP the watched weights are spread over the ranks (weight ``i`` on rank ``i % world_size``); their records
    are gathered to rank zero and written once, as in a 1-process run.

    Args:
        params: name(s) of 2-D parameters to watch; default ``"W"``, the first layer of spikelearn's
            :class:`~spikelearn.module.TwoLayerModule` (required for any other module).
        dirpath: directory of ``spectra.jsonl`` and ``figures/``; default the logger's ``log_dir``
            (``default_root_dir`` without a logger).
        first_k: analyse every step ``t <= first_k`` (step 0 is always analysed).
        every_n_steps: after ``first_k``, analyse steps divisible by this (linear cadence).
        per_decade: after ``first_k``, analyse the steps ``round(10^(i/per_decade))`` (log-spaced). Give at most
            one of ``every_n_steps`` and ``per_decade``; with neither, ``per_decade=4``
            (0, 1, 2, 3, 6, 10, 18, 32, 56, 100, …: 4 analyses per decade).
        last_step: also analyse the run's last step (``trainer.max_steps``), histogram it and draw its figure, so
            the final state is always in the record, whatever the cadence.
        k: top singular values to compute (passed to the engine; capped at ``min(N, d)``).
        max_order: highest order ``K`` of the left basis ``a, a^{∘2}, …`` and of the order-k fit.
        quantile: Tracy–Widom quantile of the outlier margin.
        log_top_k: how many top values / outliers get their own scalar tag.
        histogram_every_n_steps: log the histogram of the whole spectrum at analysed steps divisible by this
            (step 0 included). It costs ~10 % of a GD step at N = 4096 (see ``exact_spectrum``).
        histogram_per_decade: also at analysed steps ``round(10^(i/histogram_per_decade))`` and step 0; default
            1 (steps 0, 1, 10, 100, …). With both ``None`` no histogram is logged.
        histogram_bins_per_edge: histogram bin width is ``(1 + √c) / histogram_bins_per_edge`` (linear bins of
            fixed width, aligned at 0, so steps are comparable).
        figure_first_k: draw the figure at every analysed step ``t <= figure_first_k`` (``None``: none).
        figure_every_n_steps: and at analysed steps divisible by this (``None``: none).
        figure_per_decade: and at analysed steps ``round(10^(i/figure_per_decade))`` (``None``: none).
        figure_last_step: and at the last step (with ``last_step``). A figure costs ~0.25 s of CPU (one Agg
            draw serves the PNG and TensorBoard), more than 100 steps of a small MLP, so by default none is drawn
            during training: ``spikelearn report RUN_DIR`` draws the whole film from the record afterwards, and
            the packaged two-step configs ask for the figures of steps 0-2.
        save_figures: also save each figure as ``figures/spectrum_<param>_step<t>.png``.
        exact_spectrum: histograms and figures from the exact full spectrum (a float64 ``O(min(N,d)^3)``
            eigensolve) instead of the default stochastic-Lanczos estimate (32 products with ``W``; the engine's
            converged top values exact; Kolmogorov distance ~0.01 at N = 2048). Ranks up to 256 always use the exact one.

    Attributes:
        history: the records written to ``spectra.jsonl``, in order (restored from it on resume); on rank zero only.
        record_path: the ``spectra.jsonl`` path (set at ``setup``).
    """

    def __init__(
        self,
        params: str | Sequence[str] | None = None,
        dirpath: str | os.PathLike[str] | None = None,
        first_k: int = 0,
        every_n_steps: int | None = None,
        per_decade: int | None = None,
        last_step: bool = True,
        k: int = 32,
        max_order: int = 4,
        quantile: float = OUTLIER_QUANTILE,
        log_top_k: int = 8,
        histogram_every_n_steps: int | None = None,
        histogram_per_decade: int | None = 1,
        histogram_bins_per_edge: int = 40,
        figure_first_k: int | None = None,
        figure_every_n_steps: int | None = None,
        figure_per_decade: int | None = None,
        figure_last_step: bool = False,
        save_figures: bool = True,
        exact_spectrum: bool = False,
    ) -> None:
        self.params = normalize_params(params)
        self.dirpath = None if dirpath is None else Path(dirpath)
        if every_n_steps is not None and per_decade is not None:
            raise ValueError(f"give at most one of `every_n_steps` ({every_n_steps!r}) and `per_decade` ({per_decade!r}).")
        if every_n_steps is None and per_decade is None:
            per_decade = DEFAULT_PER_DECADE
        self.cadence = Cadence(first_k, 1 if every_n_steps is None else every_n_steps, per_decade)
        for name, value, low in (("k", k, 1), ("max_order", max_order, 0), ("log_top_k", log_top_k, 0),
                                 ("histogram_bins_per_edge", histogram_bins_per_edge, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
        for name, value, low in (("histogram_every_n_steps", histogram_every_n_steps, 1),
                                 ("histogram_per_decade", histogram_per_decade, 1),
                                 ("figure_first_k", figure_first_k, 0),
                                 ("figure_every_n_steps", figure_every_n_steps, 1),
                                 ("figure_per_decade", figure_per_decade, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"`{name}` must be an integer >= {low} or None, got {value!r}.")
        for name, value in (("last_step", last_step), ("figure_last_step", figure_last_step)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be true or false, got {value!r}.")
        self.last_step, self.figure_last_step = last_step, figure_last_step
        if not (isinstance(quantile, float) and 0.5 <= quantile <= 0.9999):
            raise ValueError(f"`quantile` must be a float in [0.5, 0.9999], got {quantile!r}.")
        self.k, self.max_order, self.quantile, self.log_top_k = k, max_order, quantile, log_top_k
        self.histogram_every_n_steps, self.histogram_per_decade = histogram_every_n_steps, histogram_per_decade
        self.histogram_bins_per_edge = histogram_bins_per_edge
        self.figure_first_k, self.figure_every_n_steps = figure_first_k, figure_every_n_steps
        self.figure_per_decade = figure_per_decade
        self._max_steps = -1  # trainer.max_steps, set in setup: the last step when last_step
        self._state_key: str | None = None
        self.save_figures = bool(save_figures)
        self.exact_spectrum = bool(exact_spectrum)
        self.history: list[dict[str, Any]] = []
        self.record_path: Path | None = None
        self._names: tuple[str, ...] = ()
        self._mu: list[float] | None = None
        self._W_prev: dict[str, Tensor] = {}
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
        self._max_steps = trainer.max_steps if self.last_step else -1
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
            self._mu = activation_coefficients(module.activation, self.max_order + 1).tolist()

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
        # keep W_{t-1} for the order-k fit of the update of a step that will be analysed, unless the engine already
        # holds W_{t-1}ᵀ Q_a from analysing step t-1
        step = trainer.global_step
        if self._analysed(step + 1) and two_layer(pl_module) is not None:  # the cheap test first: every step
            self._W_prev = {
                name: pl_module.get_parameter(name).detach().clone()
                for name in self._owned  # this rank's share
                if self._tracker(name).last_step != step
            }

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._last_step:
            return  # no optimizer step happened (gradient accumulation): the same on every rank
        self._last_step = step
        if self._analysed(step):
            self._analyse(trainer, pl_module, step)
        self._W_prev = {}

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
        share: list[_Analysis] = []
        failure: Exception | None = None
        try:
            share = [self._measure(trainer, pl_module, name, step) for name in self._owned]
        except Exception as err:  # noqa: BLE001 - re-raised below, once every rank knows
            failure = err
        self._agree_on_failure(step, failure)
        shares: list[list[_Analysis]] | None = [[] for _ in range(self._world_size)] if self._rank == 0 else None
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

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str, step: int) -> _Analysis:
        """Analyse one weight on this rank: its record, and the histogram's buckets and figure's values when due."""
        module = two_layer(pl_module)
        figure_due = self._figure_due(step)
        histogram_due = self._histogram_due(step)
        W = pl_module.get_parameter(name).detach()  # (N, d), measured where it lives
        N, d = W.shape
        B = target_directions(trainer, d)
        theory = None
        if module is not None:
            theory = TheoryInputs(
                a=module.a.detach(), alphas=module.schedule.exponents(step), a_kind=module.a_kind,
                activation_coefficients=self._mu, B=None if B is None else B.to(W.device),
            )
        elif B is not None:
            theory = TheoryInputs(B=B.to(W.device))
        measured = W if W.dtype in (torch.float32, torch.float64) else W.float()  # bf16/fp16: a float32 copy
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*outside the theory.*")  # kept in theory_note
            try:
                summary = self._tracker(name).update(measured, step, theory, W_prev=self._W_prev.get(name))
            except ValueError as err:
                if "must be finite" not in str(err):
                    raise
                raise ValueError(f"SpectrumMonitor: parameter {name!r} at step {step} is not finite: {err}") from err
        elapsed = time.perf_counter() - start
        record: dict[str, Any] = {
            "step": step,
            "eta": module.eta(step) if module is not None and step > 0 else None,
            "param": name,
            "N": N,
            "d": d,
            "aspect_ratio": N / d,
            **summary.to_json_dict(),
            "analysis_seconds": elapsed,
            **({"rank": self._rank} if self._world_size > 1 else {}),
        }
        notes = [] if module is not None else [_NOT_TWO_LAYER.format(model=type(pl_module).__name__)]
        if measured is not W:
            notes.append(f"{W.dtype} weights analysed as a float32 copy")
        if notes:
            record["theory_note"] = "; ".join(notes + ([record["theory_note"]] if record.get("theory_note") else []))
        histogram_due = histogram_due and self._tensorboard
        spectrum = self._spectrum(measured, summary) if (histogram_due or figure_due) else None
        figure_values = None
        if figure_due:
            values = spectrum.representative_values() if isinstance(spectrum, SpectralDensity) else spectrum
            figure_values = values.detach().cpu().to(torch.float64).tolist()  # (min(N, d),)
        return _Analysis(
            record, self._histogram(record, spectrum) if histogram_due else None, figure_values,
            summary.predicted_locations,
        )

    def _tracker(self, name: str) -> SpectralTracker:
        if name not in self._trackers:
            self._trackers[name] = SpectralTracker(k=self.k, max_order=self.max_order, quantile=self.quantile)
        return self._trackers[name]

    def _spectrum(self, W: Tensor, summary: Any) -> Tensor | SpectralDensity:
        """The full spectrum (``exact_spectrum``) or its SLQ estimate with the engine's converged top values exact."""
        if self.exact_spectrum or min(W.shape) <= _EXACT_BELOW:
            return singular_values_full(W)  # (min(N, d),)
        k = min(summary.right_vectors.shape[1], len(summary.singular_values))
        return singular_value_density(
            W, top_values=torch.tensor(summary.singular_values[:k], dtype=torch.float64),
            top_vectors=summary.right_vectors[:, :k],
        )

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
        return step in self.cadence or step == self._max_steps

    def _histogram_due(self, step: int) -> bool:
        every, per_decade = self.histogram_every_n_steps, self.histogram_per_decade
        if every is None and per_decade is None:
            return False
        return (step == 0 or step == self._max_steps or (every is not None and step % every == 0)
                or (per_decade is not None and _on_log_grid(step, per_decade)))

    def _figure_due(self, step: int) -> bool:
        first_k, every, per_decade = self.figure_first_k, self.figure_every_n_steps, self.figure_per_decade
        return ((first_k is not None and step <= first_k) or (every is not None and step % every == 0)
                or (per_decade is not None and _on_log_grid(step, per_decade))
                or (self.figure_last_step and step == self._max_steps))

    def _publish(self, trainer: L.Trainer, analysis: _Analysis) -> None:
        """Rank zero: append the record to ``spectra.jsonl`` and ``history``, and log it."""
        assert self.record_path is not None
        append_record(self.record_path, analysis.record)
        self.history.append(analysis.record)
        self._log(trainer, analysis)

    # ================================================================== where
    def _log(self, trainer: L.Trainer, analysis: _Analysis) -> None:
        """Rank zero: the record's scalars to every logger; histogram and figure (when due) to TensorBoard."""
        record, locations = analysis.record, analysis.locations
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

        fig = spectrum_figure(
            analysis.figure_values,
            N=record["N"],
            d=record["d"],
            bulk_edge=record.get("bulk_edge"),
            margin=record.get("margin"),
            noise_scale=record.get("noise_scale"),
            outlier_values=record.get("outlier_values"),
            outlier_status=record.get("outlier_status"),
            bulk_edge_mp=record.get("bulk_edge_mp"),
            predicted_locations=locations,
            predicted_outliers=record.get("predicted_outliers"),
            predicted_outliers_finite_n=record.get("predicted_outliers_finite_n"),
            outliers_deflated=record.get("outliers_deflated"),
            step=step,
            eta=record.get("eta"),
            param=name,
        )
        pixels = render_figure(fig, dpi=110)  # (H, W, 4): one draw for the PNG and for TensorBoard
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
