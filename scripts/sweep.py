r"""Run a grid of ``spikelearn fit`` runs as independent submitit jobs and aggregate their ``spectra.jsonl``.

Each grid point is one job: a full LightningCLI run (:func:`spikelearn.cli.build_cli`) from a packaged or
user config plus the point's ``--key value`` overrides, with :class:`spikelearn.callbacks.SpectrumMonitor`
attached and its own directory ``<out>/jobs/<i>/``. The same code runs here (``--cluster local``: jobs are
processes on this machine, at most ``--cores`` at a time) and on SLURM (``--cluster slurm``: a job array with
``--partition``, ``--gpus-per-node``, ``--time-min``; ``--cores`` caps the array's parallelism). When the jobs
are done, the last record of every job's ``spectra.jsonl`` (or every record with ``--all-steps``) goes into
one table, ``sweep.csv``, with the job's overrides as columns; ``sweep.png`` plots measured against predicted
outlier counts. The script reports the per-job overhead: launch (submission to the job's first line),
result pickup and aggregation, beside the jobs' own run time (``sweep_timing.csv``).

Grid axes: ``--grid KEY V1 V2 ...`` (repeatable; the product is taken). ``KEY`` may join several CLI keys
with commas, all set to the same value (``--grid model.width,data.input_dim,data.batch_size 256 512``).
``--seeds S`` adds a seed axis (``model.seed``, ``data.seed``). ``--preset`` fills the axes of the other
scripts' grids.

    python scripts/sweep.py --grid model.step_alpha "[0.3,0.45]" "[0.4,0.45]" --grid data.batches independent reused \
        --set model.width 256 --set data.input_dim 256 --set data.batch_size 256 --cores 2
    python scripts/sweep.py --preset phase_diagram --cluster slurm --partition gpu --gpus-per-node 1 --time-min 20 \
        --set trainer.accelerator gpu --cores 64
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import base_parser, finish_figure, progress, setup, write_csv  # noqa: E402

PRESETS: dict[str, list[tuple[str, list[str]]]] = {
    # the two-step phase diagram: (alpha1, alpha2) pairs x batch mode
    "phase_diagram": [
        ("model.step_alpha", [f"[{a1},{a2}]" for a1 in (0.04, 0.2, 0.36) for a2 in (0.13, 0.29, 0.45)]),
        ("data.batches", ["independent", "reused"]),
    ],
    # order-k strengths across N (read order_strengths from the table)
    "order_exponents": [
        ("model.width,data.input_dim,data.batch_size", ["256", "512", "1024", "2048", "4096"]),
        ("model.step_alpha", ["[0.3,0.45]", "[0.4,0.45]"]),
        ("data.batches", ["independent", "reused"]),
    ],
    # which directions two steps learn
    "batch_reuse": [
        ("data.target", ["he1", "bounded_he2", "he2+he3", "bounded_he3", "additive", "staircase"]),
        ("data.batches", ["independent", "reused"]),
    ],
}
RECORD_FIELDS = ("step", "eta", "N", "d", "outliers", "outliers_deflated", "predicted_outliers",
                 "predicted_outliers_deflated", "predicted_outliers_finite_n", "outlier_values", "captured_energy",
                 "order_strengths", "bulk_edge", "cut", "theory_note")
TIMING_COLUMNS = ("job", "submitted", "started", "finished", "collected", "launch_s", "run_s", "pickup_s")


def _parser():
    parser = base_parser("sweep", __doc__.split("\n\n")[0])
    parser.add_argument("--config", default="two_step_independent",
                        help="packaged config name (spikelearn.cli.CONFIG_NAMES) or a YAML path")
    parser.add_argument("--grid", nargs="+", action="append", default=[], metavar=("KEY", "VALUE"),
                        help="grid axis: KEY V1 V2 ... (KEY may be k1,k2 set together)")
    parser.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="fixed CLI override for every job")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="grid axes of another script")
    parser.add_argument("--cluster", default="local", choices=["local", "slurm", "debug"],
                        help="submitit backend (debug runs in this process)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="jobs running at once")
    parser.add_argument("--cpus-per-job", type=int, default=1, help="torch threads (SLURM: cpus_per_task) per job")
    parser.add_argument("--partition", default=None, help="SLURM partition")
    parser.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per job (SLURM/local)")
    parser.add_argument("--nodes", type=int, default=1, help="SLURM nodes per job")
    parser.add_argument("--time-min", type=int, default=30, help="job time limit in minutes")
    parser.add_argument("--mem-gb", type=float, default=None, help="SLURM memory per job")
    parser.add_argument("--all-steps", action="store_true", help="aggregate every record, not only the last")
    return parser


def grid_points(axes: list[list[str]], seeds: int | None) -> list[dict[str, str]]:
    """The product of the axes as override dicts ``{cli_key: value}`` (a comma-joined key sets each of its keys)."""
    parsed: list[tuple[list[str], list[str]]] = []
    for axis in axes:
        if len(axis) < 2:
            raise ValueError(f"--grid needs a key and at least one value, got {axis!r}.")
        parsed.append((axis[0].split(","), axis[1:]))
    if seeds:
        parsed.append((["model.seed", "data.seed"], [str(s) for s in range(seeds)]))
    points = []
    for values in itertools.product(*(vals for _, vals in parsed)):
        point: dict[str, str] = {}
        for (keys, _), value in zip(parsed, values):
            point.update({key: value for key in keys})
        points.append(point)
    return points


def run_job(cli_args: list[str], job_dir: str, threads: int) -> dict[str, Any]:
    """One job: a LightningCLI ``fit`` with SpectrumMonitor, in ``job_dir``. Returns its timestamps and record path."""
    started = time.time()
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    import logging
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if threads:
        torch.set_num_threads(threads)
    from spikelearn.cli import build_cli

    monitor = {"class_path": "spikelearn.callbacks.SpectrumMonitor",
               "init_args": {"dirpath": job_dir, "histograms": False}}
    build_cli(["fit", *cli_args, "--trainer.callbacks", json.dumps([monitor]),
               "--trainer.logger.init_args.save_dir", job_dir, "--trainer.enable_progress_bar", "false",
               "--trainer.enable_checkpointing", "false"])
    return {"started": started, "finished": time.time(), "record": str(Path(job_dir) / "spectra.jsonl")}


def _executor(args, folder: Path):
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=args.cluster)
    params: dict[str, Any] = {"timeout_min": args.time_min, "gpus_per_node": args.gpus_per_node,
                              "nodes": args.nodes, "tasks_per_node": max(1, args.gpus_per_node)}
    if args.cluster == "slurm":
        params.update(slurm_partition=args.partition, cpus_per_task=args.cpus_per_job,
                      slurm_array_parallelism=args.cores, slurm_signal_delay_s=90)
        if args.mem_gb:
            params["mem_gb"] = args.mem_gb
    executor.update_parameters(**params)
    return executor


def main(argv: list[str] | None = None) -> list[dict]:
    """Submit the grid, wait, aggregate; returns the aggregated rows (also written to ``sweep.csv``)."""
    args = _parser().parse_args(argv)
    start = setup(args)
    import cloudpickle

    from spikelearn.callbacks import read_records
    from spikelearn.cli import CONFIG_NAMES, config_path

    module = sys.modules.get(__name__)
    if __name__ != "__main__" and module is not None:
        cloudpickle.register_pickle_by_value(module)  # jobs need run_job, and this file is not an installed module
    config = str(config_path(args.config)) if args.config in CONFIG_NAMES else str(Path(args.config).resolve())
    axes = [*(list(map(str, [k, *v])) for k, v in PRESETS.get(args.preset, [])), *args.grid]
    if args.quick and not axes:
        axes = [["model.step_alpha", "[0.3,0.45]", "[0.4,0.45]"], ["data.batches", "independent", "reused"]]
    fixed = [item for key, value in args.set for item in (f"--{key}", value)]
    if args.quick and not args.set:
        fixed = [f"--{k}" for k in ("model.width", "data.input_dim", "data.batch_size")]
        fixed = [item for key in fixed for item in (key, "32")]
    points = grid_points(axes, args.seeds)
    jobs_root = (args.out / "jobs").resolve()
    executor = _executor(args, args.out.resolve() / "submitit")
    specs = []
    for i, point in enumerate(points):
        overrides = [item for key, value in point.items() for item in (f"--{key}", value)]
        specs.append((i, ["--config", config, *fixed, *overrides], str(jobs_root / f"{i:04d}")))

    timing: dict[int, dict[str, Any]] = {}
    bar = progress(range(len(specs)), f"sweep ({args.cluster}, {args.cores} at a time)", not args.no_progress)
    if args.cluster == "slurm":
        with executor.batch():
            jobs = {i: executor.submit(run_job, cli, job_dir, args.cpus_per_job) for i, cli, job_dir in specs}
        submitted = time.time()
        for i in jobs:
            timing[i] = {"job": i, "submitted": submitted}
        _collect(jobs, timing, bar, block=True)
    else:
        pending, running = list(specs), {}
        while pending or running:
            while pending and len(running) < max(1, args.cores):
                i, cli, job_dir = pending.pop(0)
                timing[i] = {"job": i, "submitted": time.time()}
                running[i] = executor.submit(run_job, cli, job_dir, args.cpus_per_job)
            _collect(running, timing, bar, block=False)
            time.sleep(0.02)
    for _ in bar:  # drain the bar
        pass

    agg_start = time.perf_counter()
    rows: list[dict] = []
    for (i, _, job_dir), point in zip(specs, points):
        records = read_records(Path(job_dir) / "spectra.jsonl")
        for record in records if args.all_steps else records[-1:]:
            rows.append({"job": i, **point, **{key: record.get(key) for key in RECORD_FIELDS}})
    aggregation = time.perf_counter() - agg_start
    write_csv(rows, args.out / "sweep.csv")
    timing_rows = [timing[i] for i in sorted(timing)]
    for t in timing_rows:
        t.update(launch_s=t["started"] - t["submitted"], run_s=t["finished"] - t["started"],
                 pickup_s=t["collected"] - t["finished"])
    write_csv(timing_rows, args.out / "sweep_timing.csv")
    _figure(rows, args)
    _report(timing_rows, aggregation, time.perf_counter() - start, args)
    return rows


def _collect(jobs: dict, timing: dict, bar, block: bool) -> None:
    for i in list(jobs):
        job = jobs[i]
        if block or job.done():
            result = job.result()  # raises the job's own exception (with its traceback) on failure
            timing[i].update(started=result["started"], finished=result["finished"], collected=time.time())
            del jobs[i]
            next(bar, None)


def _figure(rows: list[dict], args):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    x = list(range(len(rows)))
    ax.plot(x, [r["outliers"] for r in rows], "o", color="C3", label="measured")
    ax.plot(x, [r["predicted_outliers"] for r in rows], "_", ms=14, color="k", label="asymptotic 1+⌊α2/(½−α1)⌋")
    ax.plot(x, [r["predicted_outliers_finite_n"] for r in rows], "^", mfc="none", color="C0", label="finite-N predicted")
    ax.set_xlabel("job (sweep.csv row)")
    ax.set_ylabel("outliers at the last analysed step")
    aspect = sorted({f"{r['N'] / r['d']:.3g}" for r in rows if r.get("N") and r.get("d")})
    ax.set_title(f"sweep: {len(rows)} records, c = N/d ∈ {{{', '.join(aspect)}}}", fontsize=9)
    ax.legend(fontsize=8)
    return finish_figure(fig, args.out / "sweep.png", args.dpi)


def _report(timing: list[dict], aggregation: float, wall: float, args) -> None:
    import statistics

    n = len(timing)
    launch = statistics.fmean(t["launch_s"] for t in timing)
    pickup = statistics.fmean(t["pickup_s"] for t in timing)
    busy = sum(t["run_s"] for t in timing)
    at_once = 1 if args.cluster == "debug" else args.cores  # the debug executor runs jobs in this process, in turn
    print(f"sweep: {n} jobs on {args.cluster} ({at_once} at a time) in {wall:.1f} s wall; "
          f"jobs' own run time {busy:.1f} s in total ({busy / n:.2f} s/job)")
    print(f"per-job overhead: launch {launch:.2f} s (submission -> job start: process, interpreter and pickle), "
          f"result pickup {pickup:.2f} s, aggregation {aggregation / n * 1e3:.1f} ms; "
          f"parallel efficiency {busy / (wall * (1 if args.cluster == 'debug' else min(args.cores, n))):.0%}")
    print(f"wrote {args.out / 'sweep.csv'}, {args.out / 'sweep_timing.csv'}, {args.out / 'sweep.png'}")


if __name__ == "__main__":
    main()
