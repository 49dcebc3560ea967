"""Refuse sizes that cannot fit before allocating them: the bytes needed against the memory available."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["available_memory", "check_fits"]


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _host_available() -> int | None:
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:  # a container's own cap
        available = min(available, limit - used) if available is not None else limit - used
    return available


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes that can still be allocated on ``device`` (``None`` when unknown: the check is then skipped).

    CPU: ``MemAvailable`` of ``/proc/meminfo``, capped by the cgroup limit; CUDA: the free memory of the device.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        return _host_available()
    return None


def check_fits(what: str, needed: int, device: torch.device | str = "cpu") -> None:
    """Raise before allocating when ``needed`` bytes exceed what ``device`` has available.

    Args:
        what: the fields that set the size and how, e.g. ``"`model.width` x `model.input_dim` = 160000 x 160000"``.
        needed: bytes the allocation needs at its peak.
        device: where it is allocated.

    Raises:
        ValueError: naming ``what``, the bytes needed and the bytes available.

    Example:
        >>> check_fits("`data.batch_size` = 4", 64)
    """
    available = available_memory(device)
    if available is not None and needed > available:
        raise ValueError(
            f"{what} needs {needed / 1e9:.3g} GB ({needed} bytes) on {torch.device(device)}, but only "
            f"{available / 1e9:.3g} GB ({available} bytes) are available: lower it."
        )
