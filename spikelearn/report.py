r"""``spikelearn report RUN_DIR``: one self-contained HTML page per run.

The page reads what a run left in its directory and draws it with matplotlib (Agg), every image embedded as a
base64 PNG, no external URL, so it can be mailed or archived as one file:

* the result table of the run (the one ``spikelearn fit`` prints at its end) and the run's ``config.yaml`` (in the
  run directory or its parent);
* the **film** of the spectrum over the analysed steps, with a slider: the monitor's figures
  ``figures/spectrum_<param>_step<t>.png``, or, when fewer than two were saved, frames drawn from the records (top
  singular values against the fitted edge, the cut and ``1 + √c``);
* the outlier count over steps against both predictions (finite-N and asymptotic), marginal outliers marked;
* the bulk edges over steps (fitted, Marchenko–Pastur at the fitted noise scale, theoretical) with the cut;
* the captured energy of each target direction against its random baseline ``n_out/d``, and the order-k strengths
  ``‖ρ_k‖·‖a^{∘(k+1)}‖`` of each update;
* the readout's train / test MSE when the run fitted one (read from the TensorBoard event file).

Records come from ``spectra.jsonl`` (:func:`spikelearn.callbacks.read_records`); every field is optional, so
records of older runs give a page with fewer curves, not an error. Definitions of every field: ``docs/theory.md``.

Run directories are shared, copied and downloaded, so the page trusts nothing in them: it reads only regular files
(never a symlink, FIFO or device, never a directory named like a file) inside the run directory (``config.yaml`` also
from its parent), each up to a size bound; a field of the wrong type is a ``ValueError`` naming the file and record;
every string it renders is cut to :data:`MAX_TEXT` characters; the film has at most :data:`MAX_FILM_FRAMES` frames
(log-spaced steps, every step stays in the table); and the page is written to a new temporary file that is then
renamed over the target, so an existing ``report.html`` that is a symlink is replaced, never written through.

    spikelearn report runs/spikelearn/version_0              # writes runs/spikelearn/version_0/report.html
    spikelearn report runs/demo/reused --out /tmp/reused.html
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import math
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from spikelearn._atomic import atomic_write
from spikelearn.functional.record import number

__all__ = [
    "MAX_FILM_FRAMES", "MAX_TEXT", "REPORT_FILENAME", "Frame", "build_report", "film_frames", "main",
    "readout_errors_from_events",
]

REPORT_FILENAME = "report.html"
"""Default name of the page, written into the run directory."""

MAX_FILM_FRAMES = 40
"""Most frames in a film: beyond it the frames are steps chosen on a log grid (first and last included)."""

MAX_SPIKE_TRACKS = 12
"""Most spike ids drawn in the trajectories panel (the first born; every id is in the record)."""

MAX_TEXT = 200
"""Most characters of any string of a record or of the config that the page renders (the rest becomes "…")."""

_MAX_RECORD_BYTES = 512 * 2**20  # spectra.jsonl: ~1 KB per analysed step, so half a million steps
_MAX_CONFIG_BYTES = 2**20
_MAX_FIGURE_BYTES = 16 * 2**20
_MAX_CONFIG_LINES = 2000

_FIGURE_RE = re.compile(r"^spectrum_(?P<param>.+)_step(?P<step>\d+)\.png$")
_COLORS = {"measured": "black", "clear": "black", "marginal": "tab:red", "finite_n": "tab:blue", "asymptotic": "tab:orange"}


class Frame(NamedTuple):
    """One picture of the film: the step it shows, the weight, and the PNG bytes."""

    step: int
    param: str
    png: bytes


# ---------------------------------------------------------------------------------------------- reading
def _number(value: Any) -> float:
    """:func:`~spikelearn.functional.record.number`, with ``nan`` for "not a number" (what matplotlib skips)."""
    value = number(value)
    return math.nan if value is None else value


def _is_regular(path: Path) -> bool:
    """Whether ``path`` itself is a regular file: not a symlink (to anything), FIFO, device or directory."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_real_dir(path: Path) -> bool:
    """Whether ``path`` itself is a directory, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _read_regular(path: Path, limit: int) -> tuple[bytes, bool] | None:
    """The first ``limit`` bytes of the regular file ``path`` and whether there was more; ``None`` when ``path`` is
    not a regular file of its own (a symlink is never followed: ``O_NOFOLLOW``; a FIFO never blocks: ``O_NONBLOCK``)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(2**20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        return data[:limit], len(data) > limit
    finally:
        os.close(fd)


def _find_config(run_dir: Path) -> Path | None:
    for folder in (run_dir, run_dir.parent):
        for name in ("config.yaml", "config.yml"):
            if _is_regular(folder / name):
                return folder / name
    return None


def _config_text(path: Path) -> tuple[str, str]:
    """The config's text to show (bounded, undecodable bytes replaced) and a note on what was changed."""
    read = _read_regular(path, _MAX_CONFIG_BYTES)
    if read is None:
        return "", f"{path} could not be read as a regular file."
    data, more = read
    notes = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        text = data.decode("utf-8", errors="replace")
        if not (more and err.start >= len(data) - 4):  # not just a character cut by the size bound
            notes.append(f"{path} is not UTF-8 text (byte {err.start}); undecodable bytes are shown as \ufffd")
    lines = text.splitlines()
    if more or len(lines) > _MAX_CONFIG_LINES:
        notes.append(f"only the first {min(len(lines), _MAX_CONFIG_LINES)} lines of {path} are shown")
    shown = "\n".join(_bounded(line) for line in lines[:_MAX_CONFIG_LINES])
    return shown, "; ".join(notes)


def _bounded(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, lone surrogates (not UTF-8) replaced."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.encode("utf-8", errors="replace").decode("utf-8")


_RECORD_TYPES: dict[str, tuple[str, tuple[type, ...]]] = {
    "param": ("a string", (str,)),
    "N": ("an integer or null", (int, type(None))),
    "d": ("an integer or null", (int, type(None))),
    "outliers": ("an integer or null", (int, type(None))),
    "outliers_marginal": ("an integer or null", (int, type(None))),
    "theory_note": ("a string or null", (str, type(None))),
    "singular_values": ("a list of numbers", (list, type(None))),
    "captured_energy": ("a list of numbers", (list, type(None))),
    "order_strengths": ("a list of numbers", (list, type(None))),
    "outlier_status": ("a list of strings", (list, type(None))),
    "outlier_candidates": ("an integer or null", (int, type(None))),
    "edge_regular": ("a boolean or null", (bool, type(None))),
}
"""The record fields whose type the page relies on (numbers it reads are tolerated: a non-number is not drawn)."""


def _plain_text(value: Any) -> Any:
    if isinstance(value, str):
        return _bounded(value)
    if isinstance(value, list):
        return [_plain_text(v) for v in value]
    if isinstance(value, dict):
        return {_bounded(str(k)): _plain_text(v) for k, v in value.items()}
    return value


def _checked_records(path: Path, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The records with every string bounded, after checking the types the page relies on.

    Raises:
        ValueError: naming the file, the record and the field of the wrong type.
    """
    checked = []
    for number, record in enumerate(records, start=1):
        for key, (expected, types) in _RECORD_TYPES.items():
            value = record.get(key)
            if key in record and ((isinstance(value, bool) and bool not in types) or not isinstance(value, types)):
                raise ValueError(f"{path}: record {number} has `{key}` = {_bounded(repr(value), 60)}, expected {expected}.")
        for key in ("singular_values", "captured_energy", "order_strengths"):
            values = record.get(key) or []
            if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
                raise ValueError(f"{path}: record {number} has `{key}` with an entry that is not a number.")
        checked.append(_plain_text(dict(record)))
    return checked


def readout_errors_from_events(run_dir: str | os.PathLike[str]) -> dict[str, float]:
    """The last ``readout/train_mse``, ``readout/test_mse`` and ``readout/test_mse_stderr`` scalars of the run's
    TensorBoard event files (the standard error says how many digits of the test MSE mean something).

    Returns an empty dict when there is no event file or no readout (or TensorBoard is not installed).
    """
    run_dir = Path(run_dir)
    events = list(run_dir.glob("events.out.tfevents.*"))
    if not events or not all(_is_regular(p) for p in events):  # a symlink or FIFO among them: not read at all
        return {}
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        return {}
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 1, "histograms": 1, "images": 1})
    accumulator.Reload()
    out: dict[str, float] = {}
    tags = accumulator.Tags().get("scalars", [])
    for tag in ("readout/train_mse", "readout/test_mse", "readout/test_mse_stderr"):
        if tag in tags:
            out[tag] = float(accumulator.Scalars(tag)[-1].value)
    return out


# ---------------------------------------------------------------------------------------------- drawing
def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _figure(width: float = 7.5, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps
    return fig, ax


def _legend(ax: Any, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, **kwargs)


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for r in records:
        value = _number(r.get(key))
        if not math.isnan(value):
            steps.append(int(r.get("step", len(steps))))
            values.append(value)
    return steps, values


def _frame_from_record(record: Mapping[str, Any]) -> bytes:
    """A film frame drawn from one record: the top singular values, coloured clear / marginal, against the edges."""
    fig, ax = _figure(7.5, 3.8)
    values = [v for v in (record.get("singular_values") or []) if not math.isnan(_number(v))]
    count = record.get("outliers") if isinstance(record.get("outliers"), int) else 0
    status = list(record.get("outlier_status") or [])
    colors = []
    for i in range(len(values)):
        kind = (status[i] if i < len(status) else "clear") if i < count else "bulk"
        colors.append({"clear": _COLORS["clear"], "marginal": _COLORS["marginal"]}.get(kind, "tab:gray"))
    index = list(range(1, len(values) + 1))
    for kind, color, label in (("clear", _COLORS["clear"], "outlier (clear)"),
                               ("marginal", _COLORS["marginal"], "outlier (marginal)"), ("bulk", "tab:gray", "bulk")):
        points = [(i, v) for i, v, c in zip(index, values, colors)
                  if c == {"clear": _COLORS["clear"], "marginal": _COLORS["marginal"]}.get(kind, "tab:gray")]
        if points:
            ax.scatter(*zip(*points), s=28 if kind != "bulk" else 12, color=color, label=label, zorder=3)
    for key, label, style in (
        ("bulk_edge", "fitted edge", dict(color="tab:green", ls="-")),
        ("cut", "cut (edge + margin)", dict(color="tab:red", ls="--")),
        ("bulk_edge_mp", "MP edge ŝ(1+√c)", dict(color="tab:purple", ls=":")),
        ("bulk_edge_theory", "theoretical 1+√c", dict(color="tab:gray", ls="-.")),
    ):
        value = _number(record.get(key))
        if not math.isnan(value):
            ax.axhline(value, label=f"{label} {value:.3g}", lw=1.2, **style)
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))  # ticks near the edge too
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("index i of the top singular values")
    ax.set_ylabel("singular value s_i")
    eta = _number(record.get("eta"))
    title = f"{record.get('param', 'W')} at step {record.get('step', '?')}"
    title += "" if math.isnan(eta) else f"  (η_t = {eta:.3g})"
    title += f": {count} outlier(s) above the cut"
    ax.set_title(title, fontsize=10)
    _legend(ax, loc="upper right")
    return _png(fig)


def _log_grid(n: int, k: int) -> list[int]:
    """At most ``k`` indices of ``range(n)``, log-spaced (dense at the start, where spectra change fastest), with the
    first and the last.

    Example:
        >>> _log_grid(5, 40)
        [0, 1, 2, 3, 4]
        >>> picks = _log_grid(600, 40)
        >>> len(picks) <= 40, picks[0], picks[-1]
        (True, 0, 599)
    """
    if n <= k:
        return list(range(n))
    picks: set[int] = {0, n - 1}
    size = k
    while True:  # the low end of the grid rounds to repeated indices: widen it until k distinct ones
        grid = {min(n - 1, round(math.exp(math.log(n) * i / (size - 1))) - 1) for i in range(size)}
        if len(picks | grid) > k or size > 4 * k:
            break
        picks |= grid
        size += 1
    return sorted(picks)


def film_frames(run_dir: str | os.PathLike[str], records: Sequence[Mapping[str, Any]], param: str,
                max_frames: int = MAX_FILM_FRAMES) -> list[Frame]:
    """The film of ``param``: the monitor's saved figures by step, or frames drawn from the records if < 2 figures;
    at most ``max_frames`` of them, on a log grid of the steps (:func:`_log_grid`).

    Only regular files under their own name in a real ``figures/`` directory are read (no symlink, FIFO or
    directory), each up to 16 MiB.
    """
    folder = Path(run_dir) / "figures"
    found: list[tuple[int, Path]] = []
    if _is_real_dir(folder):
        for path in folder.iterdir():
            match = _FIGURE_RE.match(path.name)
            if match and match["param"] == param and _is_regular(path):
                found.append((int(match["step"]), path))
    if len(found) >= 2:
        found.sort()
        saved = []
        for i in _log_grid(len(found), max_frames):
            step, path = found[i]
            read = _read_regular(path, _MAX_FIGURE_BYTES)
            if read is not None and not read[1]:
                saved.append(Frame(step, param, read[0]))
        if len(saved) >= 2:
            return saved
    picks = _log_grid(len(records), max_frames)
    return [Frame(int(records[i].get("step", i)), param, _frame_from_record(records[i])) for i in picks]


def _counts_plot(records: Sequence[Mapping[str, Any]], param: str) -> bytes:
    fig, ax = _figure()
    steps, measured = _series(records, "outliers")
    ax.plot(steps, measured, "o-", color=_COLORS["measured"], label="measured (above the cut)", zorder=3)
    marginal = [(int(r.get("step", 0)), _number(r.get("outliers")), r.get("outliers_marginal")) for r in records]
    marked = [(s, m, k) for s, m, k in marginal if isinstance(k, int) and k > 0 and not math.isnan(m)]
    if marked:
        ax.scatter([s for s, _, _ in marked], [m for _, m, _ in marked], s=160, facecolors="none",
                   edgecolors=_COLORS["marginal"], linewidths=1.8, zorder=4, label="marginal outliers included")
        for s, m, k in marked:
            ax.annotate(f"{k} marginal", (s, m), textcoords="offset points", xytext=(6, 8), fontsize=8,
                        color=_COLORS["marginal"])
        clear = [(s, m - k) for s, m, k in marginal if isinstance(k, int) and not math.isnan(m)]
        ax.plot([s for s, _ in clear], [c for _, c in clear], ".:", color="tab:gray", label="clear only")
    for key, label, color, style, size in (  # hollow markers: a prediction equal to the measurement stays visible
        ("predicted_outliers_finite_n", "predicted, finite N (BGN)", _COLORS["finite_n"], "s--", 10),
        ("predicted_outliers", "predicted, asymptotic 1 + ⌊α₂/(½−α₁)⌋", _COLORS["asymptotic"], "^:", 12),
        ("outliers_deflated", "measured after deflating â", "tab:green", "x-.", 6),
    ):
        s, v = _series(records, key)
        if s:
            ax.plot(s, v, style, color=color, label=label, alpha=0.9, markersize=size, markerfacecolor="none")
    ax.set_xlabel("step t")
    ax.set_ylabel("outlier count")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{param}: measured outliers against both predictions", fontsize=10)
    _legend(ax)
    return _png(fig)


def _edges_plot(records: Sequence[Mapping[str, Any]], param: str) -> bytes:
    fig, ax = _figure()
    for key, label, style in (
        ("bulk_edge", "fitted edge (the cut's)", dict(color="tab:green", ls="-", marker="o")),
        ("bulk_edge_mp", "MP edge at the fitted noise scale", dict(color="tab:purple", ls=":", marker=".")),
        ("bulk_edge_theory", "theoretical 1 + √c", dict(color="tab:gray", ls="-.")),
        ("cut", "cut = edge + margin", dict(color="tab:red", ls="--", marker="v")),
        ("top_bulk_value", "top bulk value", dict(color="tab:brown", ls="", marker="_", markersize=12)),
    ):
        s, v = _series(records, key)
        if s:
            ax.plot(s, v, label=label, **style)
    ax.set_xlabel("step t")
    ax.set_ylabel("singular value")
    ax.set_title(f"{param}: bulk edges and the outlier cut", fontsize=10)
    _legend(ax)
    return _png(fig)


def _tail_plot(records: Sequence[Mapping[str, Any]], param: str) -> bytes | None:
    """``tail_alpha`` over steps, the steps whose edge is not regular (``edge_regular`` false) marked."""
    steps, alpha = _series(records, "tail_alpha")
    if not steps:
        return None
    fig, ax = _figure()
    ax.plot(steps, alpha, "o-", color="tab:blue", label="tail α (Hill, weightwatcher's eigenvalue convention)")
    heavy = [(int(r.get("step", 0)), _number(r.get("tail_alpha"))) for r in records if r.get("edge_regular") is False]
    heavy = [(t, a) for t, a in heavy if not math.isnan(a)]
    if heavy:
        ax.scatter(*zip(*heavy), s=140, facecolors="none", edgecolors="tab:red", linewidths=1.8, zorder=4,
                   label="edge not regular: heavy-tailed (localised candidates not counted)")
    ax.set_xlabel("step t")
    ax.set_ylabel("α")
    ax.set_title(f"{param}: tail exponent of the top of the spectrum and edge regularity", fontsize=10)
    _legend(ax)
    return _png(fig)


def _alignment_plot(records: Sequence[Mapping[str, Any]], param: str) -> bytes | None:
    directions = max((len(r.get("captured_energy") or []) for r in records), default=0)
    if directions == 0:
        return None
    fig, ax = _figure()
    for j in range(directions):
        points = [(int(r.get("step", 0)), _number((r.get("captured_energy") or [math.nan] * directions)[j]))
                  for r in records if len(r.get("captured_energy") or []) > j]
        points = [(s, v) for s, v in points if v > 0]
        if points:
            ax.plot(*zip(*points), "o-", label=f"captured energy of β_{j}")
    s, v = _series(records, "captured_energy_baseline")
    points = [(a, b) for a, b in zip(s, v) if b > 0]
    if points:
        ax.plot(*zip(*points), "--", color="tab:gray", label="random baseline n_out/d")
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel("Σ_i ⟨v_i, β_j⟩²")
    ax.set_title(f"{param}: energy of the target directions in the outlier subspace", fontsize=10)
    _legend(ax)
    return _png(fig)


def _orders_plot(records: Sequence[Mapping[str, Any]], param: str) -> bytes | None:
    orders = max((len(r.get("order_strengths") or []) for r in records), default=0)
    if orders == 0:
        return None
    fig, ax = _figure()
    for k in range(orders):
        points = [(int(r.get("step", 0)), _number(r["order_strengths"][k])) for r in records
                  if len(r.get("order_strengths") or []) > k]
        points = [(s, v) for s, v in points if v > 0]
        if points:
            ax.plot(*zip(*points), "o-", label=f"k = {k}")
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel("‖ρ_k‖·‖a^{∘(k+1)}‖")
    ax.set_title(f"{param}: order-k strengths of the update W_t − W_(t−1)", fontsize=10)
    _legend(ax, ncols=min(orders, 5))
    return _png(fig)


def _spike_tracks(records: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, list[Any]]]:
    """Per spike id: its steps, values, predicted locations and alignment rows (records with ``outlier_ids`` only)."""
    tracks: dict[int, dict[str, list[Any]]] = {}
    for r in records:
        ids = r.get("outlier_ids")
        if not isinstance(ids, list):
            continue
        values = r.get("outlier_values") or []
        predicted = r.get("outlier_predicted_locations") or []
        alignment = r.get("alignment") or []
        for j, spike_id in enumerate(ids):
            if not isinstance(spike_id, int) or j >= len(values):
                continue
            track = tracks.setdefault(spike_id, {"steps": [], "values": [], "predicted": [], "alignment": []})
            track["steps"].append(int(r.get("step", 0)))
            track["values"].append(_number(values[j]))
            track["predicted"].append(_number(predicted[j]) if j < len(predicted) else math.nan)
            track["alignment"].append(alignment[j] if j < len(alignment) and isinstance(alignment[j], list) else [])
    return tracks


def _trajectories_plot(records: Sequence[Mapping[str, Any]], param: str) -> bytes | None:
    """Spike trajectories: each id's value against step beside its BGN prediction (births marked), and its alignment
    with each target direction against step."""
    tracks = _spike_tracks(records)
    if not tracks:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    directions = max((len(row) for t in tracks.values() for row in t["alignment"]), default=0)
    fig, axes = plt.subplots(1, 2 if directions else 1, figsize=(11.0 if directions else 7.5, 3.8), squeeze=False,
                             layout="constrained")
    ax_value = axes[0][0]
    for spike_id, track in list(tracks.items())[:MAX_SPIKE_TRACKS]:
        line, = ax_value.plot(track["steps"], track["values"], "o-", ms=3, label=f"id {spike_id}")
        ax_value.plot(track["steps"][:1], track["values"][:1], "*", ms=11, color=line.get_color())  # birth
        if any(not math.isnan(x) for x in track["predicted"]):
            ax_value.plot(track["steps"], track["predicted"], ":", color=line.get_color())
        for j in range(directions):
            points = [(s, _number(row[j])) for s, row in zip(track["steps"], track["alignment"]) if len(row) > j]
            if points:
                axes[0][1].plot(*zip(*points), "o-" if j == 0 else "s--", ms=3, color=line.get_color(),
                                label=f"id {spike_id}, β_{j}")
    ax_value.set_xlabel("step t")
    ax_value.set_ylabel("singular value")
    ax_value.set_title(f"{param}: each spike's value (★ birth, dotted: BGN prediction)", fontsize=10)
    _legend(ax_value, ncols=2)
    if directions:
        axes[0][1].set_xlabel("step t")
        axes[0][1].set_ylabel("⟨v, β_j⟩²")
        axes[0][1].set_title(f"{param}: each spike's alignment with the target directions", fontsize=10)
        _legend(axes[0][1], ncols=2)
    return _png(fig)


# ---------------------------------------------------------------------------------------------- the page
_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; padding: 0 1.2em; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.2em 0.7em; text-align: left; border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #f4f4f4; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; max-height: 30em; }
img { max-width: 100%; }
.film { border: 1px solid #ddd; padding: 0.5em; }
.film input[type=range] { width: 60%; vertical-align: middle; }
.note { color: #666; font-size: 0.9em; }
.scroll { max-height: 26em; overflow-y: auto; display: inline-block; border: 1px solid #eee; }
"""

_FILM_JS = """
document.querySelectorAll('.film').forEach(function (film) {
  var slider = film.querySelector('input[type=range]');
  var label = film.querySelector('.film-label');
  var frames = film.querySelectorAll('img.frame');
  function show(i) {
    frames.forEach(function (frame, j) { frame.style.display = (j === i) ? 'block' : 'none'; });
    label.textContent = 'step ' + frames[i].dataset.step + '  (frame ' + (i + 1) + ' of ' + frames.length + ')';
  }
  slider.addEventListener('input', function () { show(parseInt(slider.value, 10)); });
  show(parseInt(slider.value, 10));
});
"""


def _img(png: bytes, alt: str, extra: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"{extra}>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], id_: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{id_}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _film(frames: Sequence[Frame], param: str) -> str:
    key = re.sub(r"[^A-Za-z0-9_-]", "_", param)
    images = "".join(
        _img(f.png, f"spectrum of {param} at step {f.step}", f' class="frame" data-step="{f.step}"') for f in frames
    )
    last = len(frames) - 1
    return (
        f'<div class="film" id="film-{key}"><label>step of the film: <input type="range" id="slider-{key}" '
        f'min="0" max="{last}" step="1" value="{last}"></label> <span class="film-label"></span>{images}</div>'
    )


def _tail_fact(record: Mapping[str, Any]) -> str:
    """``; tail α 2.31, edge regular`` (or heavy-tailed with the dropped candidates); empty for older records."""
    alpha, regular = _number(record.get("tail_alpha")), record.get("edge_regular")
    text = "" if math.isnan(alpha) else f"; tail α {alpha:.2f}"
    if regular is True:
        text += ", edge regular"
    elif regular is False:
        candidates = record.get("outlier_candidates")
        dropped = candidates - record["outliers"] if isinstance(candidates, int) and isinstance(
            record.get("outliers"), int) else None
        text += ", <b>heavy-tailed bulk</b>" + (f" ({dropped} localised candidate(s) not counted)" if dropped else "")
    return text


def build_report(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, records_file: str = "spectra.jsonl"
) -> Path:
    """Write the report page of ``run_dir`` (default ``run_dir/report.html``); returns its path.

    Raises:
        FileNotFoundError: if ``run_dir`` is not a directory or holds no ``spectra.jsonl``.
        ValueError: if ``spectra.jsonl`` holds no record.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from spikelearn.callbacks import read_records
    from spikelearn.callbacks.summary import summary_cells

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"`RUN_DIR` must be a run directory, got {str(run_dir)!r}, which is not a directory.")
    record_path = run_dir / records_file
    if not record_path.exists() and not record_path.is_symlink():
        found = sorted(str(p.parent) for p in run_dir.rglob(records_file) if _is_regular(p))[:5]
        hint = f" Run directories below it: {', '.join(found)}." if found else ""
        raise FileNotFoundError(f"No {records_file} in {run_dir} (SpectrumMonitor writes it in the run directory).{hint}")
    if not _is_regular(record_path):
        raise ValueError(f"{record_path} is not a regular file (a symlink, FIFO, device or directory): the report "
                         "reads only regular files inside the run directory.")
    if record_path.stat().st_size > _MAX_RECORD_BYTES:
        raise ValueError(f"{record_path} holds {record_path.stat().st_size} bytes, more than the report reads "
                         f"({_MAX_RECORD_BYTES} bytes).")
    records = _checked_records(record_path, read_records(record_path, drop_truncated=True))
    if not records:
        raise ValueError(f"{record_path} holds no record: the run stopped before its first analysed step.")
    params = list(dict.fromkeys(str(r.get("param", "W")) for r in records))
    by_param = {p: [r for r in records if str(r.get("param", "W")) == p] for p in params}
    first = records[0]

    title = f"spikelearn report: {run_dir.name}"
    parts = [f"<h1>{html.escape(title)}</h1>"]
    last = {p: rows[-1] for p, rows in by_param.items()}
    facts = []

    def shown(value: Any) -> str:
        return "–" if value is None else html.escape(str(value))

    for p, r in last.items():
        facts.append(
            f"{html.escape(p)} (N = {shown(r.get('N'))}, d = {shown(r.get('d'))}): after step {shown(r.get('step'))}, "
            f"<b>{shown(r.get('outliers'))}</b> outlier(s) measured, finite-N prediction "
            f"{shown(r.get('predicted_outliers_finite_n'))}, asymptotic {shown(r.get('predicted_outliers'))}"
            + (f", {r['outliers_marginal']} marginal" if isinstance(r.get("outliers_marginal"), int) and r["outliers_marginal"] else "")
            + _tail_fact(r)
            + "."
        )
    parts.append(f'<p id="facts">{"<br>".join(facts)}</p>')
    parts.append(f'<p class="note">Run directory: <code>{html.escape(str(run_dir.resolve()))}</code>. '
                 "Definitions of every quantity: docs/theory.md in the spikelearn repository.</p>")

    headers, rows = summary_cells(records, top_k=4)
    parts.append('<h2>Result table</h2><div class="scroll">' + _table(headers, rows, "summary") + "</div>")

    readout = readout_errors_from_events(run_dir)
    if readout:
        parts.append("<h2>Readout errors</h2>" + _table(
            ["quantity", "value"], [[k, f"{v:.4g}"] for k, v in readout.items()], "readout"))

    for p, rows_p in by_param.items():
        suffix = f" ({html.escape(p)})" if len(params) > 1 else ""
        frames = film_frames(run_dir, rows_p, p)
        parts.append(f"<h2>Spectrum over steps{suffix}</h2>")
        shown_of = "" if len(frames) >= len(rows_p) else (
            f" for {len(rows_p)} analysed steps (every step is in the result table)")
        parts.append(f'<p class="note">{len(frames)} frame(s){shown_of}; drag the slider.</p>' + _film(frames, p))
        parts.append(f"<h2>Outlier count against the predictions{suffix}</h2>"
                     + _img(_counts_plot(rows_p, p), f"{p}: counts over steps"))
        parts.append(f"<h2>Bulk edges and cut{suffix}</h2>" + _img(_edges_plot(rows_p, p), f"{p}: edges over steps"))
        tail = _tail_plot(rows_p, p)
        if tail is not None:
            parts.append(f"<h2>Tail exponent and edge regularity{suffix}</h2>"
                         + _img(tail, f"{p}: tail alpha over steps"))
        alignment = _alignment_plot(rows_p, p)
        if alignment is not None:
            parts.append(f"<h2>Alignment with the target directions{suffix}</h2>"
                         + _img(alignment, f"{p}: captured energy over steps"))
        trajectories = _trajectories_plot(rows_p, p)
        if trajectories is not None:
            parts.append(f"<h2>Spike trajectories{suffix}</h2>" + _img(trajectories, f"{p}: each spike id over steps"))
        orders = _orders_plot(rows_p, p)
        if orders is not None:
            parts.append(f"<h2>Order-k strengths{suffix}</h2>" + _img(orders, f"{p}: order-k strengths over steps"))
        notes = list(dict.fromkeys(str(r["theory_note"]) for r in rows_p if r.get("theory_note")))
        if notes:
            parts.append('<p class="note">Theory notes: ' + "; ".join(html.escape(n) for n in notes) + "</p>")

    config = _find_config(run_dir)
    parts.append("<h2>Configuration</h2>")
    if config is not None:
        text, note = _config_text(config)
        parts.append(f'<p class="note">{html.escape(str(config))}'
                     + (f" ({html.escape(note)})" if note else "") + f'</p><pre id="config">{html.escape(text)}</pre>')
    else:
        parts.append('<p class="note">No config.yaml in the run directory or its parent (a run made without the '
                     "CLI); the records say N = " + html.escape(str(first.get("N", "?"))) + ", d = "
                     + html.escape(str(first.get("d", "?"))) + ".</p>")

    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(parts)
        + f"\n<script>{_FILM_JS}</script>\n</body></html>\n"
    )
    target = Path(out) if out is not None else run_dir / REPORT_FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    data = page.encode("utf-8", errors="replace")
    # a new temporary file renamed over the target: an existing symlink is replaced, never written through
    atomic_write(target, lambda handle: handle.write(data))
    return target


def main(argv: Sequence[str] | None = None) -> Path:
    """``spikelearn report RUN_DIR [--out FILE]``: write the page and print where it is."""
    parser = argparse.ArgumentParser(
        prog="spikelearn report",
        description="One self-contained HTML page of a spikelearn run: result table, spectrum film with a slider, "
        "counts against both predictions, edges, alignments, order-k strengths, readout errors, config.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (the one holding spectra.jsonl)")
    parser.add_argument("--out", default=None, help=f"output file (default RUN_DIR/{REPORT_FILENAME})")
    args = parser.parse_args(argv)
    try:
        path = build_report(args.run_dir, args.out)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    except OSError as err:  # e.g. --out in a read-only directory: one line, not a traceback
        where = err.filename or args.out or args.run_dir
        parser.error(f"cannot write the report: {where}: {err.strerror or err}.")
    print(f"report: {path}")
    return path


if __name__ == "__main__":
    main()
