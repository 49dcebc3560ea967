"""Crash-safe files of the callbacks: the JSON-lines run record and safetensors snapshots.

* ``spectra.jsonl``: one JSON object per line, appended with a single ``write`` + ``flush`` + ``fsync``
  on a file opened in append mode, so a crash leaves at most one truncated *last* line, which
  :func:`read_records` reports instead of parsing.
* snapshots: ``step_XXXXXXXX.safetensors`` written to a temporary file in the same directory and moved into
  place with :func:`os.replace`, so a file under its final name is always complete. :func:`load_snapshots`
  only ever parses safetensors (a JSON header and raw bytes: nothing executes on load).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from spikelearn._atomic import TMP_PREFIX, atomic_write
from spikelearn.functional.record import plain

__all__ = [
    "SNAPSHOT_FORMAT",
    "Snapshot",
    "append_record",
    "encode_snapshot",
    "load_snapshot",
    "load_snapshots",
    "read_records",
    "rewrite_records",
    "save_snapshot",
    "snapshot_filename",
    "snapshot_step",
]

SNAPSHOT_FORMAT = "spikelearn.snapshot/1"
"""``format`` entry of the safetensors metadata of a snapshot."""

_SNAPSHOT_RE = re.compile(r"^step_(\d+)\.safetensors$")
_TMP_PREFIX = TMP_PREFIX
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


# ---------------------------------------------------------------------------------------------- JSON lines
def _encode(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(plain(record), separators=(",", ":"), allow_nan=False) + "\n").encode()


def append_record(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one record as a JSON line with a single ``write``, then ``fsync``.

    Non-finite floats are written as ``null``.
    """
    data = _encode(record)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask decides, as for any new file
    try:
        view = memoryview(data)
        while view:  # a regular-file write is complete in practice; loop only for the pathological case
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: str | os.PathLike[str], *, drop_truncated: bool = False) -> list[dict[str, Any]]:
    """Records of a ``spectra.jsonl`` file, in file order.

    Args:
        path: the file.
        drop_truncated: skip a truncated last line (what a crash mid-write leaves) instead of raising.

    Raises:
        ValueError: naming the file and line, for a truncated last line (unless ``drop_truncated``) or a line
            that is not UTF-8, not JSON (nested too deeply, an integer too long to convert), not a JSON object, or
            whose ``step`` is not an integer >= 0 (a string, ``NaN``, a float).
        FileNotFoundError: if the file does not exist.

    Example:
        >>> import os, tempfile, torch
        >>> path = os.path.join(tempfile.mkdtemp(), "spectra.jsonl")
        >>> append_record(path, {"step": 0, "outliers": 1})
        >>> read_records(path)
        [{'step': 0, 'outliers': 1}]
    """
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        records.append(_decode(path, number, line))
    if tail.strip():
        if not drop_truncated:
            raise ValueError(
                f"{path}: line {len(lines) + 1} is truncated (no final newline; the writer was interrupted "
                "mid-record). Remove that line or read with drop_truncated=True."
            )
    return records


def _decode(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: line {number} is not UTF-8 text (byte {err.start}: {err.reason}).") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {number} is not valid JSON ({err.msg}).") from err
    except RecursionError:
        raise ValueError(f"{path}: line {number} is nested too deeply to be a record.") from None
    except ValueError as err:  # e.g. an integer past Python's int-string conversion limit
        raise ValueError(f"{path}: line {number} is not a readable record ({err}).") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: line {number} is not a JSON object.")
    step = record.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        shown = repr(step) if len(repr(step)) <= 60 else repr(step)[:59] + "…"
        raise ValueError(f"{path}: line {number} has `step` = {shown}, expected an integer >= 0.")
    return record


def rewrite_records(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> None:
    """Replace the file's content by ``records`` atomically (temporary file + :func:`os.replace`)."""
    _atomic_write(Path(path), b"".join(_encode(r) for r in records))


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


# ---------------------------------------------------------------------------------------------- snapshots
class Snapshot(NamedTuple):
    """One saved step.

    Attributes:
        step: ``t`` (0 is the initialisation).
        eta: ``η_t`` of the step that produced it (``None`` at step 0 or when unknown).
        weights: watched weights by parameter name, e.g. ``{"W": (N, d)}``.
        a: second-layer weights ``(N,)`` of spikelearn's module, else ``None``.
        B: target directions ``(d, r)``, else ``None``.
        path: the file.
    """

    step: int
    eta: float | None
    weights: dict[str, Tensor]
    a: Tensor | None
    B: Tensor | None
    path: str


def snapshot_filename(step: int) -> str:
    """File name of the snapshot of step ``t``.

    Example:
        >>> snapshot_filename(12)
        'step_00000012.safetensors'
    """
    return f"step_{int(step):08d}.safetensors"


def snapshot_step(name: str) -> int | None:
    """The step encoded in a snapshot file name, ``None`` for other names."""
    match = _SNAPSHOT_RE.match(name)
    return None if match is None else int(match.group(1))


_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


class _SnapshotLayout(NamedTuple):
    """A snapshot's safetensors header and its tensors in file order (host, contiguous, possibly views of W)."""

    header: bytes  # 8-byte little-endian length + JSON, padded with spaces to a multiple of 8
    tensors: list[Tensor]

    @property
    def size(self) -> int:
        return len(self.header) + sum(t.numel() * t.element_size() for t in self.tensors)

    def write(self, handle: Any) -> None:
        handle.write(self.header)
        for tensor in self.tensors:
            if tensor.numel():
                handle.write(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))


def _snapshot_layout(step: int, weights: Mapping[str, Tensor], eta: float | None, a: Tensor | None,
                     B: Tensor | None) -> _SnapshotLayout:
    """The safetensors layout of one snapshot, with every tensor on the host in **one** buffer.

    A CPU tensor is used in place (no copy); a GPU one is copied to the host once. The layout is the one
    ``safetensors.torch.save`` writes (tensors by element size, then name; compact JSON padded to 8 bytes; only
    the order of the metadata keys differs, which safetensors takes from a hash map), without its two extra
    whole-file copies in memory, and the same config always gives the same bytes.
    """
    named = {f"weight/{name}": w for name, w in weights.items()}
    if a is not None:
        named["a"] = a
    if B is not None:
        named["B"] = B
    host = {name: t.detach().to("cpu").contiguous() for name, t in named.items()}
    for name, t in host.items():
        if t.dtype not in _SAFETENSORS_DTYPES:
            raise ValueError(f"snapshot tensor {name!r} has dtype {t.dtype}, which safetensors cannot store.")
    order = sorted(host, key=lambda name: (-host[name].element_size(), name))
    metadata = {
        "format": SNAPSHOT_FORMAT,
        "step": str(int(step)),
        "eta": "null" if eta is None else repr(float(eta)),
        "params": json.dumps(list(weights)),
    }
    entries: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name in order:
        t = host[name]
        end = offset + t.numel() * t.element_size()
        entries[name] = {"dtype": _SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, end]}
        offset = end
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return _SnapshotLayout(struct.pack("<Q", len(text)) + text, [host[name] for name in order])


def encode_snapshot(
    *,
    step: int,
    weights: Mapping[str, Tensor],
    eta: float | None = None,
    a: Tensor | None = None,
    B: Tensor | None = None,
) -> bytes:
    """The safetensors bytes of one snapshot: tensors ``weight/<name>``, ``a``, ``B`` and string metadata.

    (In memory; :func:`save_snapshot` writes the same bytes to a file without building them.)
    """
    buffer = io.BytesIO()
    _snapshot_layout(step, weights, eta, a, B).write(buffer)
    return buffer.getvalue()


def save_snapshot(
    path: str | os.PathLike[str],
    *,
    step: int,
    weights: Mapping[str, Tensor],
    eta: float | None = None,
    a: Tensor | None = None,
    B: Tensor | None = None,
) -> int:
    """Write one snapshot atomically (the bytes of :func:`encode_snapshot`, through :func:`spikelearn._atomic.atomic_write`); returns its size in bytes.

    The tensors go to the file from one host buffer each (the weight itself when it is on the CPU), never through
    a whole-file ``bytes`` object: a 32768² float32 ``W`` needs 4 GiB of host memory, not 12.

    Example:
        >>> import os, tempfile, torch
        >>> path = os.path.join(tempfile.mkdtemp(), snapshot_filename(1))
        >>> _ = save_snapshot(path, step=1, weights={"W": torch.eye(2)}, eta=0.5)
        >>> snap = load_snapshot(path)
        >>> snap.step, snap.eta, snap.weights["W"].tolist()
        (1, 0.5, [[1.0, 0.0], [0.0, 1.0]])
    """
    layout = _snapshot_layout(step, weights, eta, a, B)
    atomic_write(path, layout.write)
    return layout.size


def _check_safetensors(path: Path) -> None:
    """Refuse anything whose bytes are not a safetensors header (e.g. a pickle), before any parsing."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    size = os.path.getsize(path)
    reason = None
    if len(head) < 9:
        reason = "too short"
    else:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] != b"{" or header_len > _MAX_HEADER or 8 + header_len > size:
            reason = "pickle data" if head[:1] == b"\x80" else "no safetensors header"
    if reason is not None:
        raise ValueError(
            f"{path} is not a safetensors file ({reason}); spikelearn only loads safetensors snapshots and never "
            "unpickles (a pickle can execute code on load)."
        )


_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def _check_header(path: Path) -> None:
    """Check the JSON header against the file: UTF-8, an object, every tensor's shape, dtype and offsets consistent."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: the safetensors header is not UTF-8 (byte {8 + err.start}).") from None
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{path}: the safetensors header is not valid JSON ({err}).") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the safetensors header is not a JSON object.")
    data_size = size - 8 - header_len
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{path}: tensor {name!r} has no dtype / shape / data_offsets entry.")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPE_BYTES:
            raise ValueError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}.")
        if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                  for n in shape):
            raise ValueError(f"{path}: tensor {name!r} has shape {shape!r}, not a list of sizes >= 0.")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise ValueError(f"{path}: tensor {name!r} has data_offsets {offsets!r} outside the file's "
                             f"{data_size} data bytes (truncated or corrupt file).")
        needed = math.prod(shape) * _DTYPE_BYTES[dtype]
        if needed != offsets[1] - offsets[0]:
            raise ValueError(f"{path}: tensor {name!r} of shape {shape} and dtype {dtype} needs {needed} bytes but "
                             f"its data_offsets {offsets} span {offsets[1] - offsets[0]}.")


def _metadata_step(path: Path, metadata: Mapping[str, str]) -> tuple[int, float | None]:
    step_text = metadata.get("step")
    if not isinstance(step_text, str) or not re.fullmatch(r"[0-9]{1,18}", step_text):
        shown = repr(step_text) if len(repr(step_text)) <= 60 else repr(step_text)[:59] + "…"
        raise ValueError(f"{path}: metadata `step` must be an integer >= 0, got {shown} (at most 18 digits).")
    step = int(step_text)
    named = snapshot_step(path.name)
    if named is not None and named != step:
        raise ValueError(f"{path}: the file name says step {named} but its metadata says step {step}.")
    eta_text = metadata.get("eta", "null")
    try:
        eta = json.loads(eta_text) if isinstance(eta_text, str) else eta_text
    except (ValueError, RecursionError):
        try:  # repr(float) of a non-finite eta ("inf") is not JSON
            eta = float(eta_text)
        except (TypeError, ValueError):
            eta = eta_text
    if eta is not None and (isinstance(eta, bool) or not isinstance(eta, (int, float))):
        raise ValueError(f"{path}: metadata `eta` must be a number or null, got {eta_text!r}.")
    if eta is not None and math.isnan(eta):  # no step size is NaN (an infinite one is kept: it records a divergence)
        raise ValueError(f"{path}: metadata `eta` must be a number (not NaN) or null, got {eta_text!r}.")
    return step, None if eta is None else float(eta)


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Load one snapshot file written by :func:`save_snapshot` (or :class:`~spikelearn.callbacks.WeightSnapshot`).

    Raises:
        ValueError: naming the file and what is wrong: not safetensors (e.g. a pickle), a truncated file, a
            header that is not UTF-8 JSON or whose shapes and offsets disagree with the file, a missing or
            non-integer metadata ``step`` (or one other than the file name's), a non-numeric ``eta``, or not a
            spikelearn snapshot.
    """
    from safetensors import safe_open

    path = Path(path)
    _check_safetensors(path)
    _check_header(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != SNAPSHOT_FORMAT:
                raise ValueError(
                    f"{path} is a safetensors file but not a spikelearn snapshot (metadata format "
                    f"{metadata.get('format')!r}, expected {SNAPSHOT_FORMAT!r})."
                )
            step, eta = _metadata_step(path, metadata)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except ValueError:
        raise
    except Exception as err:  # safetensors' SafetensorError and friends carry no path
        raise ValueError(f"{path} is not a readable safetensors snapshot ({type(err).__name__}: {err}).") from err
    weights = {key.removeprefix("weight/"): value for key, value in tensors.items() if key.startswith("weight/")}
    for name, tensor, ndim in [*((f"weight/{k}", v, 2) for k, v in weights.items()), ("a", tensors.get("a"), 1),
                               ("B", tensors.get("B"), 2)]:
        if tensor is not None and tensor.ndim != ndim:
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(tensor.shape)}; a snapshot's "
                             f"{'weights and B are' if ndim == 2 else 'a is'} {ndim}-D.")
    return Snapshot(step, eta, weights, tensors.get("a"), tensors.get("B"), str(path))


def load_snapshots(dirpath: str | os.PathLike[str]) -> list[Snapshot]:
    """Every snapshot in ``dirpath``, sorted by step (for offline analysis).

    Every regular file in the directory must be a snapshot (hidden files are skipped: the temporary file of an
    interrupted write, the run's ``.spikelearn.lock``).

    Raises:
        FileNotFoundError: if ``dirpath`` is not a directory.
        ValueError: naming the first file that is not a safetensors snapshot (a pickle is refused unread).
    """
    dirpath = Path(dirpath)
    if not dirpath.is_dir():
        raise FileNotFoundError(f"No snapshot directory at {dirpath}.")
    snapshots = []
    for entry in sorted(dirpath.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():  # temporary files, the run's lock file
            continue
        if snapshot_step(entry.name) is None:
            _check_safetensors(entry)  # a pickle or other file gets the clear "not safetensors" error
            raise ValueError(f"{entry} is not a snapshot file (expected names like {snapshot_filename(0)!r}).")
        snapshots.append(load_snapshot(entry))
    return sorted(snapshots, key=lambda s: s.step)
