"""``WeightSnapshot``: save ``W_t`` (with ``a``, ``B``, ``t``, ``η_t``) after chosen steps, as safetensors.

Files are ``<dirpath>/step_XXXXXXXX.safetensors`` (default ``dirpath``: ``<log_dir>/snapshots``), one per
selected step: step 0 (taken in ``on_train_start``), every step ``t <= first_k``, then every
``every_n_steps`` or ``per_decade`` log-spaced steps. Each is written to a temporary file and moved into
place, on rank zero only. :func:`~spikelearn.callbacks.load_snapshots` reads the film back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from ._cadence import Cadence
from ._common import check_params, normalize_params, run_directory, target_directions, two_layer
from spikelearn._atomic import atomic_write

from ._io import _snapshot_layout, snapshot_filename, snapshot_step

__all__ = ["WeightSnapshot"]


class WeightSnapshot(Callback):
    """Save the watched weights after chosen steps as safetensors files (atomic, rank zero only).

    Args:
        params: name(s) of 2-D parameters to save; default ``"W"``, the first layer of spikelearn's
            :class:`~spikelearn.module.TwoLayerModule` (required for any other module).
        dirpath: directory of the files; default ``<log_dir>/snapshots`` (``default_root_dir`` without a logger).
        first_k: save every step ``t <= first_k`` (step 0 is always saved).
        every_n_steps: after ``first_k``, save steps divisible by this.
        per_decade: after ``first_k``, save ``round(10^(i/per_decade))`` instead (log-spaced).
        max_disk_mb: stop saving (with a warning) once the next file would take the directory's snapshots past
            this many MiB; ``None`` for no cap.

    Attributes:
        history: one dict per saved file: ``step``, ``path``, ``bytes``.

    On resume, files of steps after the checkpoint's step are removed (they belong to the interrupted future)
    and saving continues in **this** run's directory, the one it holds the lock for: a checkpoint names the
    directory of the run that wrote it, which may be another run's (a copied run directory, or the previous version
    of a logger), and nothing there is ever written or deleted. When it differs, the snapshots of steps up to the
    checkpoint's are hard-linked from it (copied across filesystems), so this directory holds the whole film.
    """

    def __init__(
        self,
        params: str | Sequence[str] | None = None,
        dirpath: str | os.PathLike[str] | None = None,
        first_k: int = 3,
        every_n_steps: int = 10,
        per_decade: int | None = None,
        max_disk_mb: float | None = None,
    ) -> None:
        self.params = normalize_params(params)
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.cadence = Cadence(first_k, every_n_steps, per_decade)
        if max_disk_mb is not None and not (isinstance(max_disk_mb, (int, float)) and max_disk_mb > 0):
            raise ValueError(f"`max_disk_mb` must be a positive number or None, got {max_disk_mb!r}.")
        self.max_disk_mb = max_disk_mb
        self.history: list[dict[str, Any]] = []
        self._names: tuple[str, ...] = ()
        self._dir: Path | None = None
        self._restored: dict[str, Any] | None = None
        self._last_step = -1
        self._capped = False

    # ------------------------------------------------------------------ hooks: when
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._names = check_params(pl_module, self.params, type(self).__name__)
        self._dir = self.dirpath if self.dirpath is not None else run_directory(trainer, None) / "snapshots"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        step = trainer.global_step
        assert self._dir is not None  # set in setup
        self._dir.mkdir(parents=True, exist_ok=True)
        if self._restored is not None and step > 0:
            previous = Path(self._restored["dirpath"]).expanduser().absolute()
            if previous.is_dir() and not os.path.samefile(previous, self._dir):  # samefile: links to one dir too
                carried = _carry_over(previous, self._dir, step)
                rank_zero_warn(
                    f"WeightSnapshot: the checkpoint's snapshots are in {previous}, another run's directory; this run "
                    f"writes only to {self._dir} (linked {carried} snapshot(s) of steps <= {step} from there, "
                    "changed nothing there)."
                )
        stale = [p for p in self._dir.iterdir() if (s := snapshot_step(p.name)) is not None and (s > step or step == 0)]
        if stale:
            if step == 0:
                rank_zero_warn(f"WeightSnapshot: replacing {len(stale)} snapshot(s) of an earlier run in {self._dir}.")
            for path in stale:
                path.unlink()
        self._last_step = step
        if step == 0:
            self._save(trainer, pl_module, 0)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step == self._last_step:
            return
        self._last_step = step
        if step in self.cadence:
            self._save(trainer, pl_module, step)

    # ------------------------------------------------------------------ where
    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        if self._capped:
            return
        module = two_layer(pl_module)
        weights = {name: pl_module.get_parameter(name) for name in self._names}
        d = next(iter(weights.values())).shape[1]
        # one host buffer per tensor (W itself on the CPU), streamed to the file: no whole-file bytes in memory
        layout = _snapshot_layout(
            step, weights, module.eta(step) if module is not None and step > 0 else None,
            module.a if module is not None else None, target_directions(trainer, d),
        )
        assert self._dir is not None
        if self.max_disk_mb is not None:
            used = sum(p.stat().st_size for p in self._dir.iterdir() if snapshot_step(p.name) is not None)
            if used + layout.size > self.max_disk_mb * 2**20:
                self._capped = True
                rank_zero_warn(
                    f"WeightSnapshot: saving step {step} would take {self._dir} past max_disk_mb={self.max_disk_mb} "
                    f"(now {used / 2**20:.1f} MiB); no further snapshots are saved in this run."
                )
                return
        path = self._dir / snapshot_filename(step)
        atomic_write(path, layout.write)
        self.history.append({"step": step, "path": str(path), "bytes": layout.size})

    # ------------------------------------------------------------------ resume
    @property
    def state_key(self) -> str:
        # several instances (other weights, other directories) can share one Trainer and one checkpoint
        return self._generate_state_key(params=self.params, dirpath=None if self.dirpath is None else str(self.dirpath))

    def state_dict(self) -> dict[str, Any]:
        return {"dirpath": None if self._dir is None else str(self._dir), "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("dirpath"), (str, type(None))) or (
            isinstance(state_dict.get("last_step", -1), bool) or not isinstance(state_dict.get("last_step", -1), int)
        ):
            raise ValueError(f"WeightSnapshot: the checkpoint's callback state must be a dict with `dirpath` (a path "
                             f"or null) and `last_step` (an integer), got {str(state_dict)[:200]!r}.")
        self._restored = dict(state_dict) if state_dict.get("dirpath") else None


def _carry_over(source: Path, target: Path, step: int) -> int:
    """Hard-link (else copy, atomically) the regular snapshot files of steps ``<= step`` from ``source`` into
    ``target`` where ``target`` lacks them; ``source`` is only read. Returns how many were carried."""
    import shutil
    import stat

    carried = 0
    for path in sorted(source.iterdir()):
        s = snapshot_step(path.name)
        destination = target / path.name
        if s is None or s > step or destination.exists() or not stat.S_ISREG(os.lstat(path).st_mode):
            continue
        try:
            os.link(path, destination)  # snapshots are replaced by rename, never rewritten in place: sharing is safe
        except OSError:
            with open(path, "rb") as source_file:
                atomic_write(destination, lambda handle: shutil.copyfileobj(source_file, handle))
        carried += 1
    return carried
