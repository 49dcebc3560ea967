"""One writer per run directory: an exclusive ``flock`` on ``<dir>/.spikelearn.lock`` (stdlib only).

``spikelearn fit`` takes the lock on every directory the run writes into (its log directory and each callback's
``dirpath``; ``default_root_dir`` when there is no logger) before training starts, and a second run aimed at the
same directory is refused with the holder's pid. The kernel releases a ``flock`` when its file descriptor is
closed, so the lock goes away when the run exits, however it exits (``kill -9`` and crashes included): a stale lock
file left behind is harmless and is simply locked again by the next run.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import socket
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "LOCK_FILENAME", "RunDirectoryLock", "RunDirectoryLockedError", "local_paths", "lock_run_directories",
    "remove_stale_temporaries", "run_directories",
]

_TMP_RE = re.compile(r"^\.tmp-[a-z0-9_]{8}$")  # spikelearn._atomic's names: tempfile.mkstemp(prefix=".tmp-")

LOCK_FILENAME = ".spikelearn.lock"
"""Name of the lock file in a run directory."""


class RunDirectoryLockedError(RuntimeError):
    """Another live process holds the lock of a run directory."""


class RunDirectoryLock:
    """Exclusive, non-blocking lock of one directory, held until :meth:`release` or process exit.

    Args:
        directory: the run directory (created if missing).

    Raises:
        RunDirectoryLockedError: from :meth:`acquire`, naming the directory and the holder (pid, host, command).

    Example:
        >>> import tempfile
        >>> lock = RunDirectoryLock(tempfile.mkdtemp()).acquire()
        >>> lock.locked
        True
        >>> lock.release()
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self.path = self.directory / LOCK_FILENAME
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> RunDirectoryLock:
        """Take the lock or raise :class:`RunDirectoryLockedError`; returns ``self``."""
        import fcntl

        if self._fd is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_holder(fd)
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunDirectoryLockedError(
                f"Run directory {self.directory} is in use by another spikelearn run ({holder}): two runs writing "
                "one directory would interleave their records and snapshots. Wait for it to finish, or give this "
                "run its own directory (another logger version, save_dir or callback dirpath)."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)[:500]}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (the lock file stays; it is not a lock by itself)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunDirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 600, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "holder unknown"


def run_directories(trainer: Any) -> list[Path]:
    """The directories a run writes its own files into: the logger's ``log_dir`` (``default_root_dir`` without a
    logger: the callbacks' default) and every callback's explicit ``dirpath`` but a ``ModelCheckpoint``'s. Shared
    parents (a logger's ``save_dir``, the working directory of a sweep with loggers) are not among them."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    candidates: list[Any] = [trainer.log_dir if trainer.loggers else trainer.default_root_dir]
    # not a ModelCheckpoint's own dirpath: its files are written atomically, and a lock file there would make
    # Lightning warn that a fresh checkpoint directory "exists and is not empty"
    candidates += [getattr(callback, "dirpath", None) for callback in trainer.callbacks
                   if not isinstance(callback, ModelCheckpoint)]
    return local_paths(candidates)


def local_paths(candidates: list[Any]) -> list[Path]:
    """The distinct local filesystem paths among ``candidates`` (``None`` and URLs such as ``s3://`` dropped)."""
    seen: list[Path] = []
    for candidate in candidates:
        if isinstance(candidate, (str, os.PathLike)) and "://" not in str(candidate):
            path = Path(candidate).expanduser().absolute()
            if path not in seen:
                seen.append(path)
    return seen


def lock_run_directories(directories: list[Path]) -> list[RunDirectoryLock]:
    """Lock every directory (all or none: on a refusal the ones already taken are released)."""
    locks: list[RunDirectoryLock] = []
    try:
        for directory in directories:
            locks.append(RunDirectoryLock(directory).acquire())
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks


def _held_elsewhere(directory: Path) -> bool:
    """Whether a live process other than this one holds ``directory``'s lock (a directory with no lock file is not a
    run directory of its own, so nobody holds it; the test never creates a lock file)."""
    import fcntl

    try:
        fd = os.open(directory / LOCK_FILENAME, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # releases the test lock, and never a lock this process holds through another descriptor
    return False


def remove_stale_temporaries(locks: list[RunDirectoryLock], *, also: list[Path] | None = None) -> list[Path]:
    """Remove the temporary files an interrupted atomic write left (``.tmp-XXXXXXXX``, spikelearn's own pattern
    only) in each locked directory and its immediate subdirectories (``snapshots/``, ``checkpoints/``,
    ``figures/``), and in the directories ``also`` (e.g. the resumed checkpoint's run) when they have a lock file
    that no live process holds. A subdirectory with a lock held by another run is skipped; symlinks are never
    followed. Returns the removed paths.

    A ``kill -9`` during a write leaves a full-size hidden file (4 GiB for a 32768² snapshot) that no later run
    would otherwise remove.
    """
    held = {lock.directory for lock in locks if lock.locked}
    roots = sorted(held) + [d for d in (also or []) if d not in held and (d / LOCK_FILENAME).exists()
                            and not _held_elsewhere(d)]
    removed: list[Path] = []
    for root in roots:
        folders = [root]
        try:
            folders += [p for p in root.iterdir() if stat.S_ISDIR(os.lstat(p).st_mode)
                        and (p in held or not _held_elsewhere(p))]
        except OSError:
            continue
        for folder in folders:
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            for path in entries:
                try:
                    if _TMP_RE.match(path.name) and stat.S_ISREG(os.lstat(path).st_mode):
                        path.unlink()
                        removed.append(path)
                except OSError:
                    continue
    return removed
