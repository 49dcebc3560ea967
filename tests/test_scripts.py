"""The experiment scripts: each ``main`` at toy size (CSV columns, PNG), plus the issue's slow checks.

Fast tests run ``--quick`` (N <= 64, one thread) in this process. Slow ones: the phase diagram at a modest size
(measured total == finite-N predicted in most cells; at c = (1, 1) never more than one above the asymptotic law)
and a 2 x 2 sweep through submitit's local executor (4 job processes) aggregating 4 records.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # cloudpickle (sweep jobs) pickles by value only modules it can find here
    spec.loader.exec_module(module)
    return module


def _columns(path: Path) -> list[str]:
    with path.open() as handle:
        return next(csv.reader(handle))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _check_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000, path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


QUICK = ["--quick", "--no-progress"]


def test_phase_diagram_quick(tmp_path):
    cells = _load("phase_diagram").main([*QUICK, "--out", str(tmp_path)])
    assert len(cells) == 2 * 2 * 2  # 2 x 2 alphas, 2 modes
    assert set(_load("phase_diagram").CELL_COLUMNS) <= set(_columns(tmp_path / "phase_diagram.csv"))
    assert set(_load("phase_diagram").RUN_COLUMNS) <= set(_columns(tmp_path / "phase_diagram_runs.csv"))
    for cell in cells:
        assert cell["predicted_outliers"] == 1 + math.floor(cell["alpha2"] / (0.5 - cell["alpha1"]))
    _check_png(tmp_path / "phase_diagram.png")


def test_order_exponents_quick(tmp_path):
    script = _load("order_exponents")
    fits = script.main([*QUICK, "--out", str(tmp_path)])
    assert set(script.FIT_COLUMNS) <= set(_columns(tmp_path / "order_exponents.csv"))
    assert set(script.RUN_COLUMNS) <= set(_columns(tmp_path / "order_exponents_runs.csv"))
    assert len(fits) == 2 * 5  # both modes, k = 0..4
    for fit in fits:
        assert fit["predicted_exponent"] == pytest.approx(0.45 - fit["k"] * (0.5 - 0.3))
        assert math.isfinite(fit["fitted_exponent"])
    _check_png(tmp_path / "order_exponents.png")


def test_batch_reuse_quick(tmp_path):
    script = _load("batch_reuse")
    rows = script.main([*QUICK, "--out", str(tmp_path)])
    assert set(script.COLUMNS) <= set(_columns(tmp_path / "batch_reuse.csv"))
    by_key = {(r["target"], r["direction"], r["batches"]): r for r in rows}
    assert len(by_key) == 2 * 3  # he1 (1 direction) and staircase (2), both modes
    # predictions from the targets' exponents: he1 always; staircase beta_2 (IE inf, p* 2) via the exception / reuse
    assert by_key[("he1", 0, "independent")]["predicted_learnable"]
    assert by_key[("staircase", 1, "independent")]["predicted_learnable"]
    assert by_key[("staircase", 1, "reused")]["predicted_learnable"]
    for row in rows:
        assert 0.0 <= row["captured_energy"] <= 1.0 + 1e-6
    _check_png(tmp_path / "batch_reuse.png")


def test_batch_reuse_even_link_never_learnable(tmp_path):
    rows = _load("batch_reuse").main([*QUICK, "--targets", "bounded_he2", "--out", str(tmp_path)])
    assert [r["predicted_learnable"] for r in rows] == [False, False]


def test_many_steps_quick(tmp_path):
    script = _load("many_steps")
    film = script.main([*QUICK, "--out", str(tmp_path)])
    assert set(script.COLUMNS) <= set(_columns(tmp_path / "many_steps.csv"))
    assert set(script.READOUT_COLUMNS) <= set(_columns(tmp_path / "many_steps_readout.csv"))
    assert {r["step"] for r in film if r["batches"] == "reused"} == set(range(7))  # T = 6, every step analysed
    readout = _rows(tmp_path / "many_steps_readout.csv")
    assert {int(r["step"]) for r in readout} >= {0, 1, 2, 6}
    _check_png(tmp_path / "many_steps.png")


def test_comparator_cases_quick(tmp_path):
    script = _load("comparator_cases")
    table = script.main([*QUICK, "--out", str(tmp_path)])
    assert {r["batches"] for r in table} == {"independent", "reused"}
    for r in table:  # every judged step is a count (equal, within 1 or off by more) or withheld
        assert r["equal"] <= r["within_1"] and r["within_1"] + r["off_by_more"] + r["withheld"] == r["steps"] > 0
    assert len(_rows(tmp_path / "comparator_cases.csv")) == len(table)


def test_sweep_grid_points():
    sweep = _load("sweep")
    points = sweep.grid_points([["model.width,data.input_dim", "8", "16"], ["data.batches", "independent", "reused"]],
                               seeds=2)
    assert len(points) == 8
    assert points[0] == {"model.width": "8", "data.input_dim": "8", "data.batches": "independent",
                         "model.seed": "0", "data.seed": "0"}
    with pytest.raises(ValueError, match="key and at least one value"):
        sweep.grid_points([["model.width"]], None)


def test_sweep_debug_executor_in_process(tmp_path):
    """The sweep's job function and aggregation, in this process (submitit's debug executor)."""
    rows = _load("sweep").main([*QUICK, "--cluster", "debug", "--grid", "data.batches", "independent", "reused",
                                "--out", str(tmp_path)])
    assert [r["data.batches"] for r in rows] == ["independent", "reused"]
    assert all(r["step"] == 2 and r["N"] == 32 for r in rows)
    assert {"job", "data.batches", "outliers", "predicted_outliers_finite_n"} <= set(_columns(tmp_path / "sweep.csv"))
    _check_png(tmp_path / "sweep.png")


@pytest.mark.slow
def test_sweep_local_executor_2x2(tmp_path):
    """2 x 2 grid through submitit's local executor (4 processes, 2 at a time): 4 aggregated records."""
    rows = _load("sweep").main([
        "--no-progress", "--cluster", "local", "--cores", "2", "--out", str(tmp_path),
        "--grid", "model.step_alpha", "[0.3,0.45]", "[0.4,0.45]", "--grid", "data.batches", "independent", "reused",
        "--set", "model.width", "32", "--set", "data.input_dim", "32", "--set", "data.batch_size", "32",
    ])
    assert len(rows) == 4
    assert {(r["model.step_alpha"], r["data.batches"]) for r in rows} == {
        (a, b) for a in ("[0.3,0.45]", "[0.4,0.45]") for b in ("independent", "reused")
    }
    assert {r["predicted_outliers"] for r in rows} == {3, 5}  # 1 + floor(0.45/0.2), 1 + floor(0.45/0.1)
    assert len(_rows(tmp_path / "sweep.csv")) == 4
    timing = _rows(tmp_path / "sweep_timing.csv")
    assert len(timing) == 4 and all(float(t["launch_s"]) >= 0 for t in timing)
    assert len(list((tmp_path / "jobs").glob("*/spectra.jsonl"))) == 4


@pytest.mark.slow
def test_phase_diagram_matches_finite_n_prediction(tmp_path):
    """Modest size (N = d = n = 512, 4 x 4 cells, both modes): the finite-N count is what the measurement follows.

    Measured total == finite-N predicted count in most cells (at least 2/3 of all runs), and at c = (1, 1) the
    measured total never exceeds the asymptotic 1 + floor(alpha2/(1/2 - alpha1)) by more than one (terms of
    negative exponent only cross BBP for large c_t, SPEC §2).
    """
    script = _load("phase_diagram")
    script.main(["--no-progress", "--threads", "1", "--N", "512", "--alpha1", "0.1", "0.2", "0.3", "0.4",
                 "--alpha2", "0.15", "0.27", "0.39", "0.45", "--seeds", "1", "--out", str(tmp_path)])
    runs = _rows(tmp_path / "phase_diagram_runs.csv")
    assert len(runs) == 32
    match = sum(r["outliers"] == r["predicted_outliers_finite_n"] for r in runs)
    assert match >= 2 * len(runs) / 3, f"measured == finite-N in only {match}/{len(runs)} runs"
    for r in runs:
        assert int(r["outliers"]) <= int(r["predicted_outliers"]) + 1, r
    _check_png(tmp_path / "phase_diagram.png")


@pytest.mark.parametrize(("name", "runs_csv"), [
    ("phase_diagram", "phase_diagram_runs.csv"),
    ("batch_reuse", "batch_reuse.csv"),
    ("order_exponents", "order_exponents_runs.csv"),
])
def test_figures_redraw_from_their_own_csv(tmp_path, name, runs_csv):
    script = _load(name)
    script.main([*QUICK, "--out", str(tmp_path / "run")])
    script.main(["--no-progress", "--from-csv", str(tmp_path / "run" / runs_csv), "--out", str(tmp_path / "redraw")])
    _check_png(tmp_path / "redraw" / f"{name}.png")


def test_bench_defaults_measures_both_workloads_side_by_side():
    """The default-overhead benchmark at toy size: both sides fitted, the overhead is their ratio (not asserted:
    timings never go into tests), and the default monitor analysed its log-spaced steps plus the last."""
    result = _load("bench_defaults").main(["--size", "32", "--steps", "3", "--mlp-steps", "12", "--threads", "1"])
    assert set(result) == {"two-layer", "mlp"}
    assert result["two-layer"]["analysed"] == 4  # steps 0, 1, 2, 3
    assert result["mlp"]["analysed"] == 7  # 0, 1, 2, 3, 6, 10 and the last step, 12
    for row in result.values():
        assert row["overhead_cpu"] == pytest.approx(row["cpu_s_with"] / row["cpu_s_without"] - 1.0)
        assert row["overhead_hooks"] > 0  # the monitor's hooks ran and were timed inside the same fits


def test_validate_counts_compares_every_step_with_the_float64_rule():
    """At toy size every schedule runs end to end and each step carries the engine's and the float64 rule's counts
    (equality at N = 1024 and 2048 is what the script reports; at N = 48 the rule is the MP fallback)."""
    result = _load("validate_counts").main(["--size", "48", "--threads", "1"])
    assert len(result) == 4
    for rows in result.values():
        assert [r["step"] for r in rows] == list(range(len(rows)))
        assert all(isinstance(r["reference"], int) and r["matvecs"] > 0 for r in rows)


def test_step_exponents_agree_with_order_exponents_at_step_2(tmp_path):
    """The same runs (widths, seeds, first two steps) give the same step-2 exponents in both scripts; later steps
    are fitted beside the stated extension alpha_t - k(1/2 - max_{s<t} alpha_s)."""
    order = _load("order_exponents").main([*QUICK, "--batches", "independent", "--out", str(tmp_path / "order")])
    step = _load("step_exponents").main([*QUICK, "--batches", "independent", "--out", str(tmp_path / "step")])
    at_two = {f["k"]: f["fitted_exponent"] for f in step if f["step"] == 2 and f["kind"] == "order"}
    assert at_two == pytest.approx({f["k"]: f["fitted_exponent"] for f in order}, rel=1e-9)
    at_three = [f for f in step if f["step"] == 3 and f["kind"] == "order"]
    assert [f["extension_exponent"] for f in at_three] == pytest.approx([0.25 - k * (0.5 - 0.45) for k in range(5)])
    assert set(_load("step_exponents").FIT_COLUMNS) <= set(_columns(tmp_path / "step" / "step_exponents.csv"))
    _check_png(tmp_path / "step" / "step_exponents.png")


def test_competitors_stop_by_themselves_and_when_the_block_exits():
    """``--load K``'s competitors (issue 20): busy processes that end at their own deadline, and are terminated when
    the block exits, on an error too."""
    competitors = _load("_competitors")
    with competitors.competing_load(1, seconds=0.2) as procs:
        assert procs[0].wait(timeout=30) == 0  # its own deadline
    with pytest.raises(RuntimeError, match="benchmark failed"):
        with competitors.competing_load(2, seconds=600) as procs:
            assert all(p.poll() is None for p in procs)
            raise RuntimeError("benchmark failed")
    assert all(p.poll() is not None for p in procs)
    with pytest.raises(ValueError, match="`k`"):
        with competitors.competing_load(-1):
            pass


def test_bench_spectral_prints_quiet_and_loaded_side_by_side(capsys):
    rows = _load("bench_spectral").main(["--sizes", "32", "--load", "1", "--repeats", "1"])
    (row,) = rows
    assert row["load"] == 1 and len(row["quiet"]["steps"]) == len(row["loaded"]["steps"]) == 5
    assert row["loaded"]["steps"][0]["reference"] is None  # the float64 check runs once, in the quiet pass
    out = capsys.readouterr().out
    assert "beside 1 CPU-bound competitors" in out and "load average after the quiet pass" in out


def test_bench_threads_times_every_step_on_every_thread_count():
    rows = _load("bench_threads").main(["--size", "32", "--rounds", "1", "--threads", "1", "2"])
    assert set(rows) == {1, 2}
    assert all([r["step"] for r in rows[n]] == [0, 1, 2, 3, 4] for n in rows)


def test_compare_alpha_smoke():
    # issue 19's comparison script on barely trained layers, spikelearn's columns only (weightwatcher is optional and
    # the script itself calls it only when installed); the table has the six layers of the issue
    pytest.importorskip("sklearn")
    compare_alpha = _load("compare_alpha")
    rows = compare_alpha.compare(compare_alpha.trained_layers(mlp_steps=3, transformer_steps=3), with_weightwatcher=False)
    assert [r["layer"].split()[0] for r in rows] == ["MLP"] * 3 + ["Transformer"] * 3
    assert all(r["status"] in ("regular", "heavy_tailed") and r["alpha"] > 1.0 for r in rows)
    assert compare_alpha.table(rows).count("\n") == 7
