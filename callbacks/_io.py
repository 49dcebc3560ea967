"""Crash-safe files of the callbacks: the JSON-lines run record and safetensors snapshots.

* ``spectra.jsonl``: one JSON object per line, appended with a single ``write`` + ``flush`` + ``fsync``
  on a file opened in append mode, so a crash leaves at most one truncated *last* line, which
  :func:`read_records` reports instead of parsing.
* snapshots: ``step_XXXXXXXX.safetensors`` written to a temporary file in the same directory and moved into
  place with :func:`os.replace`, so a file under its final name is always complete. :func:`load_snapshots`
  only ever parses safetensors (a JSON header and raw bytes: nothing executes on load).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from torch import Tensor

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
    "write_atomic",
]

SNAPSHOT_FORMAT = "spikelearn.snapshot/1"
"""``format`` entry of the safetensors metadata of a snapshot."""

_SNAPSHOT_RE = re.compile(r"^step_(\d+)\.safetensors$")
_TMP_PREFIX = ".tmp-"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


# ---------------------------------------------------------------------------------------------- JSON lines
def _plain(value: Any) -> Any:
    """JSON-safe copy: tensors to lists, non-finite floats to ``None`` (JSON has no NaN)."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _plain(value.item())
    return value


def _encode(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(_plain(record), separators=(",", ":"), allow_nan=False) + "\n").encode()


def append_record(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one record as a JSON line with a single ``write``, then ``fsync``.

    Non-finite floats are written as ``null``.
    """
    data = _encode(record)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
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
            that is not a JSON object.
        FileNotFoundError: if the file does not exist.

    Example:
        >>> import os, tempfile, torch
        >>> path = os.path.join(tempfile.mkdtemp(), "spectra.jsonl")
        >>> append_record(path, {"step": 0, "outliers": 1})
        >>> read_records(path)
        [{'step': 0, 'outliers': 1}]
    """
    path = Path(path)
    text = path.read_bytes().decode()
    lines = text.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline
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


def _decode(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {number} is not valid JSON ({err.msg}).") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path}: line {number} is not a JSON object.")
    return record


def rewrite_records(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> None:
    """Replace the file's content by ``records`` atomically (temporary file + :func:`os.replace`)."""
    _atomic_write(Path(path), b"".join(_encode(r) for r in records))


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def encode_snapshot(
    *,
    step: int,
    weights: Mapping[str, Tensor],
    eta: float | None = None,
    a: Tensor | None = None,
    B: Tensor | None = None,
) -> bytes:
    """The safetensors bytes of one snapshot: tensors ``weight/<name>``, ``a``, ``B`` and string metadata."""
    from safetensors.torch import save

    tensors = {f"weight/{name}": w.detach().to("cpu", copy=True).contiguous() for name, w in weights.items()}
    if a is not None:
        tensors["a"] = a.detach().to("cpu", copy=True).contiguous()
    if B is not None:
        tensors["B"] = B.detach().to("cpu", copy=True).contiguous()
    metadata = {
        "format": SNAPSHOT_FORMAT,
        "step": str(int(step)),
        "eta": "null" if eta is None else repr(float(eta)),
        "params": json.dumps(list(weights)),
    }
    return save(tensors, metadata=metadata)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temporary file in ``path``'s directory, ``fsync`` it, and :func:`os.replace` it into place.

    A crash leaves either the old file or the new one under ``path``, never a partial one.
    """
    _atomic_write(Path(path), data)


def save_snapshot(
    path: str | os.PathLike[str],
    *,
    step: int,
    weights: Mapping[str, Tensor],
    eta: float | None = None,
    a: Tensor | None = None,
    B: Tensor | None = None,
) -> int:
    """Write one snapshot atomically (see :func:`encode_snapshot`, :func:`write_atomic`); returns its size in bytes.

    Example:
        >>> import os, tempfile, torch
        >>> path = os.path.join(tempfile.mkdtemp(), snapshot_filename(1))
        >>> _ = save_snapshot(path, step=1, weights={"W": torch.eye(2)}, eta=0.5)
        >>> snap = load_snapshot(path)
        >>> snap.step, snap.eta, snap.weights["W"].tolist()
        (1, 0.5, [[1.0, 0.0], [0.0, 1.0]])
    """
    data = encode_snapshot(step=step, weights=weights, eta=eta, a=a, B=B)
    _atomic_write(Path(path), data)
    return len(data)


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


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Load one snapshot file written by :func:`save_snapshot` (or :class:`~spikelearn.callbacks.WeightSnapshot`).

    Raises:
        ValueError: if the file is not safetensors (e.g. a pickle) or not a spikelearn snapshot.
    """
    from safetensors import safe_open

    path = Path(path)
    _check_safetensors(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if metadata.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(
                f"{path} is a safetensors file but not a spikelearn snapshot (metadata format "
                f"{metadata.get('format')!r}, expected {SNAPSHOT_FORMAT!r})."
            )
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    weights = {key.removeprefix("weight/"): value for key, value in tensors.items() if key.startswith("weight/")}
    eta = json.loads(metadata["eta"])
    return Snapshot(int(metadata["step"]), eta, weights, tensors.get("a"), tensors.get("B"), str(path))


def load_snapshots(dirpath: str | os.PathLike[str]) -> list[Snapshot]:
    """Every snapshot in ``dirpath``, sorted by step (for offline analysis).

    Every regular file in the directory must be a snapshot (hidden temporary files of an interrupted write
    are skipped).

    Raises:
        FileNotFoundError: if ``dirpath`` is not a directory.
        ValueError: naming the first file that is not a safetensors snapshot (a pickle is refused unread).
    """
    dirpath = Path(dirpath)
    if not dirpath.is_dir():
        raise FileNotFoundError(f"No snapshot directory at {dirpath}.")
    snapshots = []
    for entry in sorted(dirpath.iterdir()):
        if entry.name.startswith(_TMP_PREFIX) or not entry.is_file():
            continue
        if snapshot_step(entry.name) is None:
            _check_safetensors(entry)  # a pickle or other file gets the clear "not safetensors" error
            raise ValueError(f"{entry} is not a snapshot file (expected names like {snapshot_filename(0)!r}).")
        snapshots.append(load_snapshot(entry))
    return sorted(snapshots, key=lambda s: s.step)
