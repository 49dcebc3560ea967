r"""The many-step comparator case by case: measured count vs finite-N comparator vs its coverage.

For every width ``N``, schedule (``η = N^0.45`` held after step 2, an ``inverse_sqrt`` tail, the packaged
``many_steps`` one), target and batch mode, ``T`` steps are trained with ``scripts/many_steps.py``; at every analysed
step ``t >= --from-step`` the comparator (SPEC §4: BGN against the measured bulk's D-transform, a basis that follows
what was learned) is either a count, within 1 of the measured one or not, or withheld with its reason.

Outputs in ``--out``: ``comparator_cases_steps.csv`` (one row per case and analysed step) and ``comparator_cases.csv``
(one row per case: steps analysed, equal, within 1, off by more, withheld, mean coverage, last step's measured /
comparator / coverage); the table is printed as Markdown too.

    python scripts/comparator_cases.py                   # N = 512 and 1024, T = 30 (about 3 min on 2 CPU cores)
    python scripts/comparator_cases.py --N 4096 --steps 100   # on a GPU
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import time
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import base_parser, progress, setup, write_csv  # noqa: E402

SCHEDULES = {  # (c_t, alpha_t, tail)
    "constant N^0.45": (["1", "1"], ["0.3", "0.45"], "constant"),
    "inverse_sqrt": (["1", "1"], ["0.3", "0.45"], "inverse_sqrt"),
    "packaged": (["1", "1", "0.5"], ["0.3", "0.45", "0.25"], "constant"),
}
TARGETS = ("he1", "bounded_he2")


def _many_steps() -> ModuleType:
    spec = importlib.util.spec_from_file_location("many_steps", Path(__file__).resolve().parent / "many_steps.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def film(N: int, schedule: str, target: str, steps: int, out: Path, threads: int | None, every: int = 1) -> list[dict]:
    """The many-step film of one case (both batch modes), rows as ``many_steps.csv``'s: every step analysed up to
    step 5, then every ``every`` steps; one readout checkpoint (the comparator does not need the readout)."""
    c, alpha, tail = SCHEDULES[schedule]
    argv = ["--no-progress", "--N", str(N), "--steps", str(steps), "--out", str(out), "--step-c", *c,
            "--step-alpha", *alpha, "--tail", tail, "--target", target, "--every", str(every), "--readout-points", "1"]
    with contextlib.redirect_stdout(io.StringIO()):  # many_steps' own summary lines
        return _many_steps().main(argv + (["--threads", str(threads)] if threads else []))


def summary(rows: list[dict], from_step: int) -> dict:
    """One case's verdict over its analysed steps ``t >= from_step``."""
    late = [r for r in rows if r["step"] >= from_step]
    reported = [r for r in late if r["predicted_outliers_finite_n"] is not None]
    off = [abs(r["predicted_outliers_finite_n"] - r["outliers"]) for r in reported]
    coverage = [r["comparator_coverage"] for r in late if r["comparator_coverage"] is not None]
    last = late[-1] if late else {}
    return {
        "steps": len(late), "equal": sum(o == 0 for o in off), "within_1": sum(o <= 1 for o in off),
        "off_by_more": sum(o > 1 for o in off), "withheld": len(late) - len(reported),
        "mean_coverage": sum(coverage) / len(coverage) if coverage else None,
        "last_step": last.get("step"), "last_measured": last.get("outliers"),
        "last_comparator": last.get("predicted_outliers_finite_n"), "last_coverage": last.get("comparator_coverage"),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = base_parser("comparator_cases", __doc__.split("\n\n")[0], threads=1)
    parser.add_argument("--N", type=int, nargs="+", default=[512, 1024], help="widths (d = n = N)")
    parser.add_argument("--steps", type=int, default=30, help="T")
    parser.add_argument("--from-step", type=int, default=10, help="first step judged")
    parser.add_argument("--every", type=int, default=1, help="analyse every this many steps after step 5")
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=list(SCHEDULES))
    parser.add_argument("--targets", nargs="+", default=list(TARGETS))
    args = parser.parse_args(argv)
    start = setup(args)
    if args.quick:
        args.N, args.steps, args.from_step, args.schedules, args.targets = [48], 6, 3, args.schedules[:1], ["he1"]
    cases = [(N, s, t) for N in args.N for s in args.schedules for t in args.targets]
    steps_rows, table = [], []
    for N, schedule, target in progress(cases, "comparator cases", not args.no_progress):
        rows = film(N, schedule, target, args.steps, args.out / "films", args.threads, args.every)
        for batches in sorted({r["batches"] for r in rows}):
            mine = [r for r in rows if r["batches"] == batches]
            case = {"N": N, "schedule": schedule, "target": target, "batches": batches}
            steps_rows += [{**case, **{k: r[k] for k in ("step", "outliers", "predicted_outliers_finite_n",
                                                         "comparator_coverage", "theory_note")}} for r in mine]
            table.append({**case, **summary(mine, args.from_step)})
    write_csv(steps_rows, args.out / "comparator_cases_steps.csv")
    write_csv(table, args.out / "comparator_cases.csv")
    head = ["N", "schedule", "target", "batches", "steps", "equal", "within_1", "off_by_more", "withheld",
            "mean_coverage", "last_step", "last_measured", "last_comparator", "last_coverage"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for row in table:
        print("| " + " | ".join(f"{row[h]:.2f}" if isinstance(row[h], float) else str(row[h]) for h in head) + " |")
    print(f"comparator cases in {time.perf_counter() - start:.1f} s; wrote {args.out / 'comparator_cases.csv'}")
    return table


if __name__ == "__main__":
    main()
