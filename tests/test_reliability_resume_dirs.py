"""A resume writes only where this run writes (issue 18, rows 2 and 10): resuming a copy of a run never touches
the original's snapshots, and a run that takes its directory's lock removes the stale temporaries a ``kill -9``
left there (only spikelearn's own ``.tmp-*`` names)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from reliability_helpers import MONITOR_KWARGS, tiny_data, tiny_module, tiny_trainer

from spikelearn.callbacks import SpectrumMonitor, WeightSnapshot, load_snapshots


def _fit(root: Path, max_steps: int, ckpt_path: Path | None = None) -> None:
    """Default directories: snapshots in root/snapshots, record in root, checkpoints in root/checkpoints."""
    callbacks = [WeightSnapshot(first_k=100), SpectrumMonitor(**MONITOR_KWARGS),
                 ModelCheckpoint(every_n_train_steps=1, save_last=True, save_top_k=0)]
    tiny_trainer(root, max_steps, precision="64-true", callbacks=callbacks,
                 enable_checkpointing=True).fit(tiny_module(), tiny_data(), ckpt_path=ckpt_path)


def _listing(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def test_resuming_a_copy_of_a_run_leaves_the_original_untouched(tmp_path):
    original, copy = tmp_path / "A", tmp_path / "B"
    _fit(original, 4)
    shutil.copytree(original, copy, symlinks=True)
    _fit(original, 8, ckpt_path=original / "checkpoints" / "last.ckpt")
    before = _listing(original / "snapshots")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(copy, 6, ckpt_path=copy / "checkpoints" / "last.ckpt")
    assert _listing(original / "snapshots") == before, "the copy's resume wrote into the original's snapshots"
    assert [s.step for s in load_snapshots(copy / "snapshots")] == list(range(7))
    assert any("another run's directory; this run writes only to" in str(w.message) for w in caught)
