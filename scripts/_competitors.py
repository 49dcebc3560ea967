"""Bounded CPU-bound competitors for the benchmarks' ``--load K`` (issue 20): what a laptop with a browser open or a
shared cluster node does to a run.

Each competitor is a separate Python process spinning a pure-Python busy loop (no torch, no threads) until its own
deadline, so it stops by itself even when the benchmark is killed; the context manager also terminates it on the way
out, error or not.

Example::

    with competing_load(2, seconds=600):
        ...  # timed under two competitors
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

__all__ = ["competing_load", "load_average"]

_BUSY = "import time\ndeadline = time.monotonic() + {seconds}\nwhile time.monotonic() < deadline:\n    pass\n"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as printed beside every figure."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextlib.contextmanager
def competing_load(k: int, seconds: float = 900.0) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``k`` busy-loop processes, each ending by itself after ``seconds``; terminated when the block exits.

    Args:
        k: number of competitors (``0``: none).
        seconds: each competitor's own deadline (a bound in case this process dies without cleaning up).

    Raises:
        ValueError: if ``k`` is negative or ``seconds`` not positive.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"`k` must be an integer >= 0, got {k!r}.")
    if not seconds > 0:
        raise ValueError(f"`seconds` must be positive, got {seconds!r}.")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(k):
            procs.append(subprocess.Popen([sys.executable, "-c", _BUSY.format(seconds=float(seconds))],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        if procs:
            time.sleep(0.5)  # let them start spinning before anything is timed
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
