"""Peak memory and wall time of the ridge readout against the size of its test set (issue 21).

Runs ``spikelearn fit`` as a child process per test size: ``--trainer.max_steps`` steps at ``N = d = --width`` with
``--model.readout true`` (no config file: no monitor, no snapshots) and reads the child's peak resident set size
from ``wait4``. With ``--pythonpath DIR`` the child imports spikelearn from ``DIR`` first (an older checkout, to
measure the readout before it streamed). Prints one line per size and the logged readout numbers.

    python scripts/bench_readout.py --test-sizes 100000 1000000 --width 256
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--width", type=int, default=256, help="N = d")
    parser.add_argument("--batch-size", type=int, default=256, help="n of each step")
    parser.add_argument("--readout-size", type=int, default=1024)
    parser.add_argument("--test-batch-size", type=int, default=None, help="data.test_batch_size (default: its default)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--pythonpath", default=None, help="import spikelearn from here first (an older checkout)")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, test_size: int) -> dict[str, object]:
    """One child run: peak RSS (MB), wall time (s), exit status and the printed readout line."""
    command = [sys.executable, "-m", "spikelearn.cli", "fit", "--model.width", str(args.width),
               "--data.input_dim", str(args.width), "--data.batch_size", str(args.batch_size),
               "--data.test_size", str(test_size), "--data.readout_size", str(args.readout_size),
               "--model.readout", "true", "--trainer.max_steps", str(args.steps),
               "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]
    if args.test_batch_size is not None:
        command += ["--data.test_batch_size", str(args.test_batch_size)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.pythonpath, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        command += ["--trainer.default_root_dir", tmp]
        start = time.perf_counter()
        with tempfile.TemporaryFile("w+") as out:
            child = subprocess.Popen(command, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            text = out.read()
        seconds = time.perf_counter() - start
    found = re.search(r"^readout: .*$", text, re.MULTILINE)
    last = text.strip().splitlines()[-1] if text.strip() else ""
    return {"test_size": test_size, "peak_rss_mb": usage.ru_maxrss / 1024, "seconds": seconds,
            "exit": child.returncode, "readout": found.group(0) if found else last[-200:]}


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    args = parse_args(argv)
    rows = []
    for size in args.test_sizes:
        row = measure(args, size)
        rows.append(row)
        print(f"test_size {size:>11,d}: peak RSS {row['peak_rss_mb']:8.0f} MB, {row['seconds']:7.1f} s, exit "
              f"{row['exit']}  {row['readout']}", flush=True)
    return rows


if __name__ == "__main__":
    main()
