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


STALE = ".tmp-abc123_z"  # the pattern of spikelearn._atomic's temporary files (tempfile.mkstemp(prefix=".tmp-"))
NOT_OURS = (".tmp-keep-me", "notes.tmp-abc123_z", ".tmp-ABCDEFGH")


def test_a_run_that_takes_the_lock_removes_stale_temporaries_of_its_own_directories(tmp_path):
    from reliability_helpers import write_run_config

    from spikelearn.cli import build_cli
    from spikelearn.run_lock import RunDirectoryLock

    config = write_run_config(tmp_path / "run.yaml", tmp_path, max_steps=2)
    folders = [tmp_path / name for name in ("snapshots", "checkpoints", "record", "record/figures")]
    for folder in folders:
        folder.mkdir(parents=True)
        (folder / STALE).write_bytes(b"\0" * 4096)
        for name in NOT_OURS:
            (folder / name).write_bytes(b"kept")
    other = tmp_path / "other_run"  # another live run's directory below this one: not ours to clean
    other.mkdir()
    (other / STALE).write_bytes(b"live")
    with RunDirectoryLock(other):
        build_cli(["fit", "--config", str(config)])
    for folder in folders:
        assert not (folder / STALE).exists(), f"the stale temporary in {folder} was left"
        assert all((folder / name).read_bytes() == b"kept" for name in NOT_OURS)
    assert (other / STALE).read_bytes() == b"live"


def test_a_resume_into_a_new_version_cleans_the_interrupted_version(tmp_path):
    from reliability_helpers import write_run_config

    from spikelearn.cli import build_cli

    config = write_run_config(tmp_path / "run.yaml", tmp_path, max_steps=2, checkpoint_every=None, logger=True,
                              explicit_dirs=False)  # the CLI's own periodic last.ckpt, in version_0/checkpoints
    build_cli(["fit", "--config", str(config)])
    version_0 = tmp_path / "tb" / "run" / "version_0"
    (version_0 / "snapshots" / STALE).write_bytes(b"\0" * 4096)  # what a kill -9 mid-snapshot leaves
    build_cli(["fit", "--config", str(config), "--trainer.max_steps", "3", "--ckpt_path", "last"])
    assert (tmp_path / "tb" / "run" / "version_1" / "checkpoints" / "last.ckpt").is_file()
    assert not (version_0 / "snapshots" / STALE).exists()
