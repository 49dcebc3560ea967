"""``AtomicCheckpointIO``: Lightning checkpoints written atomically in their own directory and read weights-only.

Lightning's default ``TorchCheckpointIO`` serialises into memory and lets fsspec write a temporary file in the
*system* temporary directory, then moves it; across filesystems that move is a copy, so a disk that fills up leaves
a torn ``epoch=0-step=10.ckpt`` under its final name. This plugin writes the temporary file beside the target,
``fsync``-s it and renames it (:func:`spikelearn._atomic.atomic_write`), and reads every checkpoint through
:func:`spikelearn.module.load_checkpoint`, so a crafted pickle is refused with torch's reason whatever way the path
was given (``--ckpt_path file``, ``last``, ``hpc`` or SLURM's automatic resume). The CLI uses it by default;
in Python pass ``Trainer(plugins=[AtomicCheckpointIO()])``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from spikelearn._atomic import atomic_write
from spikelearn.module import load_checkpoint

__all__ = ["AtomicCheckpointIO", "with_atomic_checkpoint_io"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with an atomic, same-directory write and spikelearn's weights-only read.

    Remote (``s3://``, …) paths are passed to Lightning's implementation unchanged.

    Example:
        >>> import tempfile, torch
        >>> path = Path(tempfile.mkdtemp()) / "checkpoints" / "a.ckpt"
        >>> io = AtomicCheckpointIO()
        >>> io.save_checkpoint({"state_dict": {"W": torch.ones(2)}, "global_step": 3}, path)
        >>> io.load_checkpoint(path)["global_step"]
        3
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if _is_remote(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"`storage_options` is not supported by {type(self).__name__}, got {storage_options!r}.")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write(target, lambda handle: _save(checkpoint, handle))
        except OSError as err:  # one line naming the file and the disk's free space, not torch's "unexpected pos"
            raise OSError(f"cannot write the checkpoint {target} ({_free(target.parent)} free on its disk): "
                          f"{err.strerror or err}") from err

    def load_checkpoint(
        self, path: Any, map_location: Callable | str | torch.device | None = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        if _is_remote(path) or weights_only is False:  # weights_only=False: the user said they trust the file
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        return load_checkpoint(path, map_location="cpu" if map_location is None else map_location)


def _save(checkpoint: dict[str, Any], handle: Any) -> None:
    """``torch.save`` into ``handle``, re-raising the handle's own ``OSError`` (e.g. ``ENOSPC``) instead of the
    ``RuntimeError: … unexpected pos …`` torch's zip writer turns it into."""
    failures: list[OSError] = []
    write = handle.write

    def recording_write(data: Any) -> Any:
        try:
            return write(data)
        except OSError as err:
            failures.append(err)
            raise

    handle.write = recording_write
    try:
        torch.save(checkpoint, handle)
    except RuntimeError:
        if failures:
            raise failures[0] from None
        raise
    finally:
        del handle.write


def _free(directory: Path) -> str:
    try:
        return f"{shutil.disk_usage(directory).free / 2**20:.1f} MiB"
    except OSError:
        return "unknown space"


def _is_remote(path: Any) -> bool:
    return "://" in str(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else True


def with_atomic_checkpoint_io(plugins: Any) -> list[Any]:
    """``plugins`` (a Trainer argument: ``None``, one plugin or a list) plus :class:`AtomicCheckpointIO` unless they
    already hold a ``CheckpointIO``."""
    from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO

    given = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if any(isinstance(p, CheckpointIO) for p in given):
        return given
    return [*given, AtomicCheckpointIO()]
