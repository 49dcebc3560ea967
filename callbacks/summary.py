r"""``RunSummary``: what a finished fit shows — the result table, TensorBoard laid out for the theory, HPARAMS metrics.

The callback reads the records of the :class:`~spikelearn.callbacks.SpectrumMonitor` in ``trainer.callbacks``
(``monitor.history``: one dict per analysed step and watched weight, the lines of ``spectra.jsonl``) and

* at train start writes a TensorBoard **custom-scalars layout** (:func:`custom_scalars_layout`, the CUSTOM SCALARS
  tab): measured against finite-N and asymptotic predicted count on one chart, the fitted / Marchenko–Pastur /
  theoretical edges with the cut on one chart, the captured energy of each target direction against its random
  baseline ``n_out/d``, the order-k strengths and the readout errors;
* at the end of the fit logs **HPARAMS metrics** (:func:`final_metrics`: final counts, captured energy, readout
  MSE) with every ``model.*`` and ``data.*`` argument (both seeds), instead of Lightning's placeholder
  ``hp_metric = -1``;
* then prints the **result table** (:func:`summary_table`, the same table ``scripts/demo.py`` prints: step,
  ``η_t``, measured outliers total / deflated with the marginal ones, predicted asymptotic / finite-N, top singular
  values, captured energy) and where the run wrote.

Every record key is optional (older records lack ``outliers_marginal`` and friends): a missing value prints
``–`` and a missing tag is simply absent from a chart.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from ._common import tensorboard_writers
from spikelearn.functional.record import charts, final_scalars
from spikelearn.functional.record import number as _number

__all__ = [
    "RunSummary",
    "custom_scalars_layout",
    "final_metrics",
    "find_monitor",
    "print_table",
    "summary_cells",
    "summary_table",
]

_DASH = "–"


def _fmt(value: Any, spec: str = ".3g") -> str:
    number = _number(value)
    if number is None:
        return _DASH
    if isinstance(value, int) and spec == ".3g":
        return str(value)
    return format(number, spec)


def _count(record: Mapping[str, Any]) -> str:
    """``"3 / 2"`` (total / deflated), with ``" (1 marginal)"`` when the cut decides some of them."""
    text = f"{_fmt(record.get('outliers'))} / {_fmt(record.get('outliers_deflated'))}"
    marginal = record.get("outliers_marginal")
    if isinstance(marginal, int) and marginal > 0:
        text += f" ({marginal} marginal)"
    return text


def _asymptotic(record: Mapping[str, Any]) -> str:
    """The asymptotic count; past two steps marked ``ext`` (the stated extension, a conjecture, not the theorem)."""
    text = _fmt(record.get("predicted_outliers"))
    if text != _DASH and "extension of the two-step law" in str(record.get("theory_note") or ""):
        text += " ext"
    return text


def summary_table(
    records: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    group: str = "run",
    title: str | None = None,
    top_k: int = 4,
    max_rows: int | None = None,
) -> Any:
    """The result table of one run (a list of records) or of several (``{label: records}``) as a ``rich`` Table.

    Columns: ``step``, ``η_t``, ``outliers tot/defl`` (measured total / after deflating the first-step direction,
    with the marginal count), ``predicted asym/finite-N`` (``1 + ⌊α₂/(½ − α₁)⌋``, past two steps its stated
    extension marked ``ext`` / the finite-N BGN count, ``–`` where withheld), the top
    ``top_k`` singular values and the energy of each target direction captured by the outlier subspace with its
    random baseline ``n_out/d``. A ``param`` column appears when the records watch several weights, and a ``group``
    column (e.g. ``"batches"``) when ``records`` is a mapping.

    Args:
        records: the records (``SpectrumMonitor.history`` or :func:`~spikelearn.callbacks.read_records`), or a
            mapping from a run label to its records.
        group: header of the label column when ``records`` is a mapping.
        title: table title.
        top_k: how many top singular values to show.
        max_rows: show at most this many rows per run (the first steps, then evenly spaced ones up to the last,
            with a ``…`` row between); ``None`` shows every record.

    Example:
        >>> table = summary_table([{"step": 2, "eta": 42.2, "outliers": 3, "outliers_deflated": 2,
        ...                         "outliers_marginal": 1, "predicted_outliers": 3,
        ...                         "predicted_outliers_finite_n": 3, "singular_values": [28.7, 3.08],
        ...                         "captured_energy": [0.561], "captured_energy_baseline": 0.0015}])
        >>> [column.header for column in table.columns][:4]
        ['step', 'η_t', 'outliers tot/defl', 'predicted asym/finite-N']
        >>> [list(column.cells)[0] for column in table.columns][2:]
        ['3 / 2 (1 marginal)', '3 / 3', '28.70 3.08', '0.561 (1.5e-03)']
    """
    from rich import box
    from rich.table import Table

    headers, rows = summary_cells(records, group=group, top_k=top_k, max_rows=max_rows)
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", show_edge=False, pad_edge=False)
    for header in headers:
        table.add_column(header, no_wrap=True)
    for cells in rows:
        table.add_row(*cells)
    return table


def summary_cells(
    records: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    group: str = "run",
    top_k: int = 4,
    max_rows: int | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Headers and text cells of :func:`summary_table` (also the table of ``spikelearn report``'s page).

    Example:
        >>> headers, rows = summary_cells([{"step": 1, "eta": 14.4, "outliers": 1, "outliers_deflated": 0}])
        >>> dict(zip(headers, rows[0]))["outliers tot/defl"]
        '1 / 0'
    """
    groups = dict(records) if isinstance(records, Mapping) else {"": list(records)}
    params = {r.get("param") for rows in groups.values() for r in rows}
    headers = [group] if isinstance(records, Mapping) else []
    if len(params) > 1:
        headers.append("param")
    headers += ["step", "η_t", "outliers tot/defl", "predicted asym/finite-N", "top singular values",
                "⟨v,β_j⟩² captured (baseline)"]
    out: list[list[str]] = []
    for label, rows in groups.items():
        for r in _thin(list(rows), max_rows):
            if r is None:
                out.append(["…"] * len(headers))
                continue
            captured = " ".join(f"{v:.3f}" for v in (r.get("captured_energy") or []) if _number(v) is not None)
            baseline = _number(r.get("captured_energy_baseline"))
            if baseline is not None:
                captured = f"{captured} ({baseline:.1e})".strip()
            cells = [label] if isinstance(records, Mapping) else []
            if len(params) > 1:
                cells.append(str(r.get("param", _DASH)))
            cells += [
                _fmt(r.get("step")),
                _fmt(r.get("eta")),
                _count(r),
                f"{_asymptotic(r)} / {_fmt(r.get('predicted_outliers_finite_n'))}",
                " ".join(f"{v:.2f}" for v in (r.get("singular_values") or [])[:top_k]) or _DASH,
                captured or _DASH,
            ]
            out.append(cells)
    return headers, out


def _thin(rows: list[Any], max_rows: int | None) -> list[Any]:
    """At most about ``max_rows`` rows: the first third as they are, then every ``k``-th up to the last one;
    ``None`` marks where the stride starts."""
    if max_rows is None or len(rows) <= max(max_rows, 2):
        return rows
    head = max(max_rows // 3, 1)
    stride = math.ceil((len(rows) - head) / max(max_rows - head, 1))
    picks = list(range(head - 1 + stride, len(rows), stride))
    if not picks or picks[-1] != len(rows) - 1:
        picks.append(len(rows) - 1)
    return [*rows[:head], None, *(rows[i] for i in picks)]


def print_table(table: Any, file: TextIO | None = None, width: int | None = None) -> None:
    """Print a ``rich`` renderable to ``file`` (default stdout) without wrapping it at 80 columns in a pipe.

    A terminal keeps its own width; a file or pipe gets ``width`` (default 200) so that captured output has the
    table's rows on single lines.
    """
    import io

    from rich.console import Console

    target = file if file is not None else sys.stdout
    console = Console(file=target, highlight=False, soft_wrap=False)
    if width is None and console.is_terminal:
        console.print(table)
        return
    buffer = io.StringIO()
    Console(file=buffer, highlight=False, soft_wrap=False, width=width or 200, no_color=True).print(table)
    target.write("\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n")


def custom_scalars_layout(params: Sequence[str], readout: bool = True) -> dict[str, dict[str, list[Any]]]:
    r"""TensorBoard custom-scalars layout for the monitor's tags (``SummaryWriter.add_custom_scalars``).

    One category per watched weight, each with multiline charts whose tags are regular expressions, so fields a
    record lacks are just absent; the charts are those of :data:`~spikelearn.functional.record.FIELDS`
    (:func:`~spikelearn.functional.record.charts`): the outlier count measured (total, marginal, deflated) against
    the finite-N and asymptotic predictions; the bulk edges (fitted, Marchenko–Pastur at the fitted noise scale,
    theoretical ``1 + √c``) with the cut and the top bulk value; the captured energy of each ``β_j`` against the
    baseline ``n_out/d``; the order-k strengths; the outlier locations. With ``readout`` a ``readout`` category
    charts the train / test MSE.

    Example:
        >>> layout = custom_scalars_layout(["W"])
        >>> sorted(layout)
        ['readout', 'spectrum W']
        >>> layout["spectrum W"]["outlier count: measured vs predicted"][1][0]
        '^spectrum/W/(outliers|outliers_marginal|outliers_deflated)$'
    """
    layout: dict[str, dict[str, list[Any]]] = {}
    for param in params:  # the charts and their tags come from the record's one table of fields
        layout[f"spectrum {param}"] = {title: ["Multiline", lines] for title, lines in charts(param).items()}
    if readout:
        layout["readout"] = {"readout MSE": ["Multiline", [r"^readout/(train|test)_mse$"]]}
    return layout


def find_monitor(trainer: L.Trainer) -> Any:
    """The first :class:`~spikelearn.callbacks.SpectrumMonitor` among ``trainer.callbacks`` (``None`` without one)."""
    from .spectrum import SpectrumMonitor

    return next((c for c in trainer.callbacks if isinstance(c, SpectrumMonitor)), None)


def final_metrics(
    records: Sequence[Mapping[str, Any]], readout: Mapping[str, float] | None = None
) -> dict[str, float]:
    """HPARAMS metrics of a run: the last record of each weight, plus the readout errors.

    Tags ``final/<param>/<field>`` for the fields :data:`~spikelearn.functional.record.FIELDS` marks ``final``
    (``step``, ``outliers``, ``outliers_marginal``, ``outliers_deflated``, ``predicted_outliers``,
    ``predicted_outliers_finite_n``, ``captured_energy/beta_<j>``, ``captured_energy_baseline``);
    ``final/readout_train_mse`` and ``final/readout_test_mse``. Missing or non-finite values are left out.

    Example:
        >>> final_metrics([{"param": "W", "step": 0, "outliers": 0},
        ...                {"param": "W", "step": 2, "outliers": 3, "captured_energy": [0.5]}],
        ...               {"readout/test_mse": 0.25})
        {'final/W/step': 2.0, 'final/W/outliers': 3.0, 'final/W/captured_energy/beta_0': 0.5, 'final/readout_test_mse': 0.25}
    """
    last: dict[str, Mapping[str, Any]] = {}
    for record in records:
        last[str(record.get("param", "W"))] = record
    out: dict[str, float] = {}
    for record in last.values():  # the fields and their tags come from the record's one table (FIELDS' ``final``)
        out.update(final_scalars(record))

    def put(tag: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            out[tag] = number

    for key in ("readout/train_mse", "readout/test_mse"):
        put("final/" + key.replace("/", "_"), (readout or {}).get(key))
    return out


def _hparams(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
    """``model.<name>`` and ``data.<name>`` for every saved hyperparameter (both seeds, unlike Lightning's merge)."""
    params: dict[str, Any] = {}
    for prefix, owner in (("model", pl_module), ("data", getattr(trainer, "datamodule", None))):
        hparams = dict(getattr(owner, "hparams", {}) or {})
        for key, value in hparams.items():
            if not str(key).startswith("_"):  # Lightning's _instantiator
                params[f"{prefix}.{key}"] = list(value) if isinstance(value, tuple) else value  # plain YAML lists
    return params


def _write_hparams_yaml(logger: TensorBoardLogger) -> None:
    # TensorBoardLogger.save() never overwrites an existing hparams.yaml; this run's file is ours to replace
    from lightning.pytorch.core.saving import save_hparams_to_yaml

    log_dir = Path(logger.log_dir)
    if log_dir.is_dir():
        save_hparams_to_yaml(log_dir / TensorBoardLogger.NAME_HPARAMS_FILE, logger.hparams)


class RunSummary(Callback):
    """End every fit with its result: the result table, a TensorBoard layout, HPARAMS metrics (module docstring).

    Added to every ``spikelearn fit`` by the CLI; attach it to a Trainer of your own next to a
    :class:`~spikelearn.callbacks.SpectrumMonitor`. Without a monitor it still logs the hyperparameters and prints
    the run directory.

    Args:
        print_table: print the result table and the output paths at the end of the fit (rank zero only).
        layout: write the custom-scalars layout to each TensorBoard logger at train start.
        hparams: log ``model.*`` / ``data.*`` with :func:`final_metrics` to each logger at the end of the fit.
        top_k: singular values shown per row.
        max_rows: rows of the printed table (long runs show their first steps, then evenly spaced ones; every
            record is in ``spectra.jsonl`` and on the ``spikelearn report`` page).

    Attributes:
        metrics: the HPARAMS metrics logged at the end of the fit (for tests and scripts).
        run_dir: where the run wrote (the monitor's directory, else the logger's ``log_dir``).
    """

    def __init__(
        self, print_table: bool = True, layout: bool = True, hparams: bool = True, top_k: int = 4, max_rows: int = 16
    ) -> None:
        for name, value in (("top_k", top_k), ("max_rows", max_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}.")
        self.print_table, self.layout, self.hparams, self.top_k = bool(print_table), bool(layout), bool(hparams), top_k
        self.max_rows = max_rows
        self.metrics: dict[str, float] = {}
        self.run_dir: Path | None = None
        self._finished = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finished = False
        if not (self.layout and trainer.is_global_zero):
            return
        monitor = find_monitor(trainer)
        params: list[str] = []
        if monitor is not None:
            params = list(dict.fromkeys(str(r["param"]) for r in monitor.history if "param" in r))
            params = params or list(monitor.params or ("W",))
        layout = custom_scalars_layout(params, readout=bool(getattr(pl_module, "readout", False)))
        for writer in tensorboard_writers(trainer):
            writer.add_custom_scalars(layout)
            writer.flush()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after the module's on_train_end (the readout) and before the loggers are finalised
        if not trainer.is_global_zero:
            return
        monitor = find_monitor(trainer)
        records = list(monitor.history) if monitor is not None else []
        readout = dict(getattr(pl_module, "readout_metrics", {}) or {})
        self.metrics = final_metrics(records, readout)
        if monitor is not None and monitor.record_path is not None:
            self.run_dir = Path(monitor.record_path).parent
        elif trainer.log_dir is not None:
            self.run_dir = Path(trainer.log_dir)
        if self.hparams:
            params = _hparams(trainer, pl_module)
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.hparams = {}  # hparams.yaml then holds model.* / data.* instead of Lightning's merge
                    logger.log_hyperparams(params, metrics=self.metrics or None, step=trainer.global_step)
                    _write_hparams_yaml(logger)
                else:
                    logger.log_hyperparams(params)
                    if self.metrics:
                        logger.log_metrics(self.metrics, step=trainer.global_step)
        self._finished = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # after the progress bar has stopped (it stops in its own teardown, listed before this callback)
        if stage != "fit" or not self._finished or not self.print_table or not trainer.is_global_zero:
            return
        self._finished = False
        monitor = find_monitor(trainer)
        records = list(monitor.history) if monitor is not None else []
        out = sys.stdout
        if records:
            title = f"spikelearn: {trainer.global_step} steps"
            print_table(summary_table(records, top_k=self.top_k, title=title, max_rows=self.max_rows or None), out)
        readout = dict(getattr(pl_module, "readout_metrics", {}) or {})
        if readout:
            print("readout: " + ", ".join(f"{k.split('/')[-1]} {v:.4g}" for k, v in readout.items()), file=out)
        if self.run_dir is not None:
            print(f"run directory: {self.run_dir}", file=out)
            print(f"report:        spikelearn report {self.run_dir}", file=out)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                print(f"TensorBoard:   tensorboard --logdir {logger.save_dir}  (smoothing 0 for counts)", file=out)
                break
        out.flush()
