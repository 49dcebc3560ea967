"""Atomic file writes shared by the checkpoint plugin and the callbacks' files (stdlib only).

A file is written to a hidden temporary file *in its own directory*, flushed and ``fsync``-ed, given the mode the
user's umask gives any new file (``0o666 & ~umask``, not :func:`tempfile.mkstemp`'s ``0o600``), and moved into place
with :func:`os.replace` (atomic within one filesystem); the directory is then ``fsync``-ed so the rename survives a
power cut. A crash or a full disk leaves the previous file (or none) under the final name, never a partial one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["TMP_PREFIX", "atomic_write", "user_file_mode"]

TMP_PREFIX = ".tmp-"
"""Prefix of the temporary files (hidden; readers of a directory skip them)."""


def user_file_mode() -> int:
    """The mode a new regular file gets from ``open()`` under the current umask: ``0o666 & ~umask``.

    Example:
        >>> user_file_mode() & 0o600
        384
    """
    try:  # Linux >= 4.7 reports the umask without changing it (os.umask is process-wide and not thread-safe)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory fds: the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` atomically: ``write(handle)`` fills a temporary file beside it, which replaces ``path``.

    Args:
        path: the final file name; its directory must exist.
        write: called once with the temporary file opened for binary writing.

    Raises:
        OSError: whatever the write, ``fsync`` or rename raised (e.g. ``ENOSPC``); the temporary file is removed
            and ``path`` is untouched.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "file.bin"
        >>> atomic_write(target, lambda handle: handle.write(b"abc"))
        >>> target.read_bytes()
        b'abc'
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), user_file_mode())
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)
