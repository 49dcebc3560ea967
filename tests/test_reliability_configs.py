"""Bad configs, property-based: every draw over the config space (sizes, alpha's, c's, batch mode, target and
activation names, cadences, dtypes) either trains one step or raises ValueError/TypeError naming the offending
field; never a traceback from deep inside torch, never a silent fallback.

Each field has a strategy of valid values and one of invalid values; a draw corrupts up to two fields (or none)
and the test knows which names an error may cite. Combinations that are each valid but inconsistent together
(reused batches with a batch count, a target with more directions than ``d``, a model and data of different ``d``)
are fields of their own.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from reliability_helpers import MONITOR_KWARGS, tiny_trainer

from spikelearn.callbacks._cadence import Cadence
from spikelearn.callbacks import SpectrumMonitor, WeightSnapshot, load_snapshots, read_records
from spikelearn.data import GaussianDataModule
from spikelearn.functional.activations import ACTIVATIONS
from spikelearn.functional.model import INIT_KINDS, LOSSES, READOUT_KINDS
from spikelearn.functional.schedule import TAILS
from spikelearn.functional.targets import TARGET_NAMES
from spikelearn.module import TwoLayerModule

small = st.integers(1, 6)
nonpositive = st.sampled_from([0, -1, -7])
not_an_int = st.sampled_from([2.5, "4", None, True, float("nan")])
bad_name = st.sampled_from(["", "swish", "HE1", "he 1", "none", "orthogonal", "l1", "linear"])
c_value = st.floats(0.05, 2.0)
alpha_value = st.floats(0.0, 0.49)


def _schedule_valid():
    return st.integers(1, 3).flatmap(lambda n: st.tuples(st.lists(c_value, min_size=n, max_size=n),
                                                         st.lists(alpha_value, min_size=n, max_size=n)))


def _schedule_invalid():
    return st.one_of(
        st.tuples(st.lists(c_value, min_size=2, max_size=2), st.lists(alpha_value, min_size=1, max_size=1)),
        st.tuples(st.just([]), st.just([])),
        st.tuples(st.sampled_from([[0.0], [-1.0], [math.nan], [math.inf], ["abc"], [None], 1.0, "1.0"]),
                  st.just([0.25])),
        st.tuples(st.just([1.0]), st.sampled_from([[math.nan], [math.inf], [-math.inf], ["x"], 0.25, None])),
    )


# field -> (valid strategy, invalid strategy, names an error about it may cite)
FIELDS: dict[str, tuple[Any, Any, tuple[str, ...]]] = {
    "input_dim": (small, st.one_of(nonpositive, not_an_int), ("input_dim",)),
    "width": (small, st.one_of(nonpositive, not_an_int), ("width",)),
    # width <= max_order: the left basis a, a^2, ..., a^(K+1) cannot fit (was a torch error in solve_triangular)
    "width_vs_order": (st.just(False), st.just(True), ("max_order",)),
    "batch_size": (st.integers(1, 12), st.one_of(nonpositive, not_an_int), ("batch_size",)),
    "batches": (
        st.sampled_from([("independent", None), ("reused", None)]) | st.tuples(st.just("resample_every"), small),
        st.sampled_from([("reused", 2), ("independent", 3), ("resample_every", None), ("resample_every", 0),
                         ("resample_every", 1.5), ("fresh", None), (None, None), (1, None)]),
        ("batches", "resample_every"),
    ),
    "target": (
        st.sampled_from([(t, None) for t in TARGET_NAMES if t not in ("additive", "staircase")]
                        + [("he1+he3", None), ("additive", ["he1"])]),
        st.sampled_from([("he7", None), ("he0", None), ("", None), (3, None), (None, None), ("he1", ["he2"]),
                         ("additive", ["he9"]), ("additive", []), ("additive", "he1"), ("he1+", None)]),
        ("target", "components"),
    ),
    "noise_std": (st.sampled_from([0.0, 0.1, 1]), st.sampled_from([-0.1, math.nan, math.inf, "0.1", None]),
                  ("noise_std",)),
    "data_seed": (st.integers(0, 2**40), st.sampled_from([-1, 2**64, 1.5, "0", None]), ("seed",)),
    "test_size": (small, st.one_of(nonpositive, not_an_int), ("test_size",)),
    "readout_size": (st.integers(0, 6), st.sampled_from([-1, 2.0, "3", None]), ("readout_size",)),
    "activation": (st.sampled_from(sorted(ACTIVATIONS)), st.one_of(bad_name, st.sampled_from([3, None])),
                   ("activation",)),
    "init": (st.sampled_from(INIT_KINDS), st.one_of(bad_name, st.just(None)), ("init",)),
    "readout_init": (st.sampled_from(READOUT_KINDS), st.one_of(bad_name, st.just(None)), ("readout_init",)),
    "schedule": (_schedule_valid(), _schedule_invalid(), ("step_c", "step_alpha")),
    "step_tail": (st.sampled_from(TAILS), st.one_of(bad_name, st.just(None)), ("step_tail",)),
    "loss": (st.sampled_from(LOSSES), st.one_of(bad_name, st.just(None)), ("loss",)),
    "model_seed": (st.integers(0, 2**40), st.sampled_from([-1, 2**64, 1.5, None]), ("seed",)),
    "readout_ridge": (st.sampled_from([0.0, 1e-3, 1]), st.sampled_from([-1.0, math.nan, math.inf, "1e-3"]),
                      ("readout_ridge",)),
    "max_norm_growth": (st.sampled_from([1e6, math.inf]), st.sampled_from([1.0, 0.5, -2.0, math.nan, "10", None]),
                        ("max_norm_growth",)),
    "snapshot_cadence": (
        st.tuples(st.integers(0, 3), small, st.none() | small),
        st.sampled_from([(-1, 1, None), (0, 0, None), (0, 1, 0), (1.5, 1, None), (0, "2", None), (0, 1, 2.0)]),
        ("first_k", "every_n_steps", "per_decade"),
    ),
    "monitor": (
        st.fixed_dictionaries({"k": st.integers(1, 8), "max_order": st.integers(0, 3),
                               "quantile": st.sampled_from([0.9, 0.995]),
                               "histogram_every_n_steps": st.sampled_from([None, 1])}),
        st.sampled_from([{"k": 0}, {"max_order": -1}, {"quantile": 1.5}, {"quantile": 1}, {"quantile": "0.9"},
                         {"histogram_every_n_steps": 0}, {"every_n_steps": 0}, {"first_k": -2}]),
        ("k", "max_order", "quantile", "histogram_every_n_steps", "every_n_steps", "first_k"),
    ),
    # bf16 trains; the monitor analyses a float32 copy and the readout solves in float32
    "precision": (st.sampled_from(["32-true", "64-true", "bf16-true"]),
                  st.sampled_from(["8-true", "float64", "64-mixed", "128-true"]), ("precision",)),
    # valid one by one, inconsistent together
    "rank_vs_d": (st.just(False), st.just(True), ("target", "input_dim")),
    "model_vs_data_d": (st.just(False), st.just(True), ("input_dim",)),
}


@st.composite
def configs(draw, corrupt_max: int = 2) -> tuple[dict[str, Any], set[str]]:
    n_bad = draw(st.integers(0, corrupt_max))  # about a third of the draws are fully valid and must train
    bad = set(draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=n_bad, max_size=n_bad, unique=True)))
    values = {name: draw(invalid if name in bad else valid) for name, (valid, invalid, _) in FIELDS.items()}
    return values, bad


def _build_and_fit(v: dict[str, Any], root: Path) -> TwoLayerModule:
    batches, resample_every = v["batches"]
    target, components = v["target"]
    d = v["input_dim"]
    if v["rank_vs_d"]:  # the staircase needs 2 directions; give it d = 1
        target, components, d = "staircase", None, 1
    data = GaussianDataModule(
        input_dim=d, batch_size=v["batch_size"], batches=batches, resample_every=resample_every, target=target,
        target_components=components, noise_std=v["noise_std"], seed=v["data_seed"], test_size=v["test_size"],
        readout_size=v["readout_size"],
    )
    c, alpha = v["schedule"]
    module = TwoLayerModule(
        width=v["width"], input_dim=(d + 1 if v["model_vs_data_d"] and isinstance(d, int) else d),
        activation=v["activation"], init=v["init"], readout_init=v["readout_init"], step_c=c, step_alpha=alpha,
        step_tail=v["step_tail"], loss=v["loss"], seed=v["model_seed"], readout=True, readout_ridge=v["readout_ridge"],
        max_norm_growth=v["max_norm_growth"],
    )
    first_k, every, per_decade = v["snapshot_cadence"]
    monitor = {"max_order": MONITOR_KWARGS["engine"]["max_order"], **MONITOR_KWARGS, **v["monitor"]}
    if v["width_vs_order"] and isinstance(v["width"], int) and v["width"] >= 1:
        monitor["max_order"] = v["width"]
    elif isinstance(v["width"], int) and v["width"] >= 1 and isinstance(monitor["max_order"], int):
        monitor["max_order"] = min(monitor["max_order"], v["width"] - 1)
    callbacks = [
        WeightSnapshot(dirpath=root / "snapshots", first_k=first_k, every_n_steps=every, per_decade=per_decade),
        SpectrumMonitor(dirpath=root / "record", **_monitor_kwargs(monitor)),
    ]
    tiny_trainer(root, 1, precision=v["precision"], callbacks=callbacks).fit(module, data)
    return module


def _monitor_kwargs(monitor: dict[str, Any]) -> dict[str, Any]:
    """The fuzzed monitor fields as SpectrumMonitor's arguments: ``k``, ``max_order``, ``quantile`` in ``engine``,
    ``every_n_steps`` / ``first_k`` in ``analyses``, ``histogram_every_n_steps`` as ``histograms``."""
    out = {key: value for key, value in monitor.items()
           if key not in ("k", "max_order", "quantile", "every_n_steps", "first_k", "histogram_every_n_steps")}
    out["engine"] = {**out.get("engine", {}), **{k: monitor[k] for k in ("k", "max_order", "quantile") if k in monitor}}
    out["analyses"] = {**out.get("analyses", {}), **{k: monitor[k] for k in ("every_n_steps", "first_k") if k in monitor}}
    if "histogram_every_n_steps" in monitor:
        every = monitor["histogram_every_n_steps"]
        out["histograms"] = False if every is None else {"every_n_steps": every}
    return out


def _check(values: dict[str, Any], bad: set[str], note=lambda outcome: None) -> None:
    allowed = {name for field in bad for name in FIELDS[field][2]}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        try:
            module = _build_and_fit(values, root)
        except (ValueError, TypeError) as err:
            message = str(err)
            assert bad, f"a valid config was refused: {type(err).__name__}: {message}"
            assert any(name in message for name in allowed), (
                f"the error does not name any of {sorted(allowed)}: {type(err).__name__}: {message}")
            assert type(err).__module__ in ("builtins",), type(err)
            note(f"refused: {type(err).__name__}")
            return
        assert not bad, f"invalid {sorted(bad)} accepted silently: {[values[b] for b in sorted(bad)]}"
        assert module.global_step == 1
        note("trained one step")
        assert torch.isfinite(module.W).all()
        assert [r["step"] for r in read_records(root / "record" / "spectra.jsonl")] == [0, 1]
        first_k, every, per_decade = values["snapshot_cadence"]
        expected = [0, 1] if 1 in Cadence(first_k, every, per_decade) else [0]
        assert [s.step for s in load_snapshots(root / "snapshots")] == expected


_SETTINGS = {"deadline": None, "derandomize": True, "suppress_health_check": [HealthCheck.too_slow]}


@settings(max_examples=40, **_SETTINGS)
@given(configs())
def test_every_config_trains_one_step_or_names_the_bad_field(case):
    _check(*case, note=event)


# CI draws the same 250 configs every run (a gate must not fail by chance: a random draw once found the bf16
# readout bug only in CI); to explore new configs locally set "derandomize": False here and run
#   pytest tests/test_reliability_configs.py -k many --hypothesis-seed=$RANDOM
@pytest.mark.slow
@settings(max_examples=250, **_SETTINGS)
@given(configs(corrupt_max=3))
def test_every_config_trains_one_step_or_names_the_bad_field_many(case):
    _check(*case, note=event)


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_each_field_alone(field):
    """One corrupted field at a time, deterministically: its first invalid example must be named."""
    _check(*_single(field))


def _single(field: str) -> tuple[dict[str, Any], set[str]]:
    defaults = {
        "input_dim": 4, "width": 4, "batch_size": 8, "batches": ("independent", None), "target": ("he1", None),
        "noise_std": 0.0, "data_seed": 0, "test_size": 4, "readout_size": 4, "activation": "shifted_tanh",
        "init": "gaussian", "readout_init": "gaussian", "schedule": ([1.0, 1.0], [0.3, 0.45]),
        "step_tail": "constant", "loss": "mse", "model_seed": 0, "readout_ridge": 1e-3, "max_norm_growth": 1e6,
        "snapshot_cadence": (3, 1, None), "monitor": {}, "precision": "64-true", "rank_vs_d": False,
        "model_vs_data_d": False, "width_vs_order": False,
    }
    invalid = {
        "input_dim": 0, "width": -1, "batch_size": 2.5, "batches": ("reused", 2), "target": ("he7", None),
        "noise_std": -0.1, "data_seed": -1, "test_size": 0, "readout_size": -1, "activation": "swish",
        "init": "orthogonal", "readout_init": "zeros", "schedule": ([1.0], [0.1, 0.2]), "step_tail": "linear",
        "loss": "l1", "model_seed": 2**64, "readout_ridge": math.nan, "max_norm_growth": 1.0,
        "snapshot_cadence": (0, 0, None), "monitor": {"k": 0}, "precision": "8-true", "rank_vs_d": True,
        "model_vs_data_d": True, "width_vs_order": True,
    }
    return {**defaults, field: invalid[field]}, {field}


def test_all_valid_defaults_train():
    values, _ = _single("input_dim")
    values["input_dim"] = 4
    _check(values, set())


@pytest.mark.parametrize(("batch_size", "world_size"), [(63, 2), (10, 4), (7, 3), (1, 2)])
def test_batch_not_divisible_by_world_size_names_both(batch_size, world_size):
    data = GaussianDataModule(input_dim=4, batch_size=batch_size, test_size=4, readout_size=4)

    class FakeTrainer:
        pass

    FakeTrainer.world_size = world_size
    data.trainer = FakeTrainer()
    with pytest.raises(ValueError, match=rf"`data.batch_size` \({batch_size}\) must be divisible by the world size "
                                         rf"\({world_size}\)"):
        data.setup("fit")
