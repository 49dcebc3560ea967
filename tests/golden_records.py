"""Records and TensorBoard tags of small runs of the packaged configs and the demo, for before/after tests.

``tests/data/golden/`` holds what this module wrote with the engine of commit 105c9ff (before the staged engine):
one ``<case>.jsonl``, written on one intra-op thread as the tests run, (the run's ``spectra.jsonl``) and ``<case>.tags.json`` (the scalar tags TensorBoard got) per
case. ``tests/test_record_golden.py`` re-runs each case with today's code and compares. Regenerate only when a
number is meant to change, and say why in the commit:

    python tests/golden_records.py tests/data/golden
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

SMALL = ["--trainer.enable_progress_bar", "false", "--model.width", "128", "--data.input_dim", "128"]
CASES: dict[str, list[str]] = {
    "two_step_reused": ["--config", "two_step_reused", *SMALL, "--data.batch_size", "256"],
    "two_step_independent": ["--config", "two_step_independent", *SMALL, "--data.batch_size", "256"],
    "many_steps": ["--config", "many_steps", *SMALL, "--data.batch_size", "256", "--trainer.max_steps", "12",
                   "--data.test_size", "256", "--data.readout_size", "256"],
}
TIMING_FIELDS = ("analysis_seconds",)


def run_case(name: str, out: Path) -> tuple[list[dict[str, object]], list[str]]:
    """Run one case into ``out``; its records and the sorted scalar tags of its TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spikelearn.callbacks import read_records
    from spikelearn.cli import build_cli

    cli = build_cli(["fit", *CASES[name], "--trainer.default_root_dir", str(out)])
    record_path = next(Path(out).rglob("spectra.jsonl"))
    events = EventAccumulator(str(record_path.parent), size_guidance={"scalars": 0})
    events.Reload()
    del cli
    return read_records(record_path), sorted(events.Tags()["scalars"])


def demo_case(out: Path) -> tuple[list[dict[str, object]], list[str]]:
    """The demo at N = 128, reused batches only."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spikelearn.callbacks import read_records

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import demo

    demo.main(["--size", "128", "--batches", "reused", "--out-dir", str(out), "--no-progress"])
    record_path = next(Path(out).rglob("spectra.jsonl"))
    events = EventAccumulator(str(record_path.parent), size_guidance={"scalars": 0})
    events.Reload()
    return read_records(record_path), sorted(events.Tags()["scalars"])


def tracker_case() -> list[dict[str, object]]:
    """One tracker along a planted trajectory (400 x 300, float32): W_t = X_t + sum_k theta_k(t) a^(k+1) v_k^T, with a
    second spike born at step 3 and the first one fading; each record is the engine's JSON dict."""
    import torch

    from spikelearn.functional.engine import SpectralTracker
    from spikelearn.functional.inputs import EngineConfig, TheoryInputs

    g = torch.Generator().manual_seed(7)
    N, d = 400, 300
    a = torch.randn(N, generator=g, dtype=torch.float64) / N**0.5
    B = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64))[0]
    X = torch.randn(N, d, generator=g, dtype=torch.float64) / d**0.5
    tracker, out = SpectralTracker(EngineConfig(k=16)), []
    for t in range(7):
        dX = torch.randn(N, d, generator=g, dtype=torch.float64) / d**0.5
        X = X + 0.05 * dX
        W = X + (4.0 - 0.4 * t) * torch.outer(a / a.norm(), B[:, 0])
        W = W + max(0.0, t - 2.0) * torch.outer((a**2 - (a**2).mean()) / (a**2 - (a**2).mean()).norm(), B[:, 1])
        theory = TheoryInputs(a=a.float(), alphas=[0.35, 0.4, 0.2, 0.2, 0.2, 0.2][:t] or None, B=B.float())
        out.append(tracker.update(W.float(), t, theory).record(step=t))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    import tempfile

    import torch

    torch.set_num_threads(1)  # as the test suite runs (tests/conftest.py): float32 sums depend on the thread count
    target = Path((list(argv) if argv is not None else sys.argv[1:])[0])
    target.mkdir(parents=True, exist_ok=True)
    records = tracker_case()
    (target / "tracker.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for name in [*CASES, "demo"]:
        with tempfile.TemporaryDirectory() as tmp:
            records, tags = demo_case(Path(tmp)) if name == "demo" else run_case(name, Path(tmp))
        (target / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (target / f"{name}.tags.json").write_text(json.dumps(tags, indent=0) + "\n")
        print(name, len(records), "records", len(tags), "tags")


if __name__ == "__main__":
    main()
