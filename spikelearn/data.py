"""Synthetic Gaussian data, one full batch per gradient step (SPEC §1, "batches").

The batch of step ``t`` is a pure function of ``(seed, draw(t))`` where ``draw(t)`` is ``t`` for independent
batches, ``1`` for reused ones and ``⌈t / m⌉`` when a batch is resampled every ``m`` steps. Batches are drawn
on the training device with a generator seeded from :class:`numpy.random.SeedSequence` ``(seed, purpose, draw)``,
so resuming at any step regenerates exactly the batch an uninterrupted run would have used, and a plain
DataLoader never replays old batches. Under DDP every rank draws the same full batch and keeps its
``n / world_size`` rows, so the averaged DDP gradient is the full-batch gradient.

The readout's fit and test sets are drawn the same way, in chunks of ``test_batch_size`` rows: chunk ``k`` is a pure
function of ``(seed, purpose, k)``, so a set of any size is never held whole, and under DDP rank ``r`` draws the
chunks ``k ≡ r (mod world_size)``: the ranks together see exactly the rows one process sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
from torch import Tensor

from lightning.fabric.utilities.data import AttributeDict

from spikelearn._memory import check_fits
from spikelearn.functional.targets import Target, make_target, target_directions

__all__ = ["BATCH_MODES", "DEFAULT_TEST_BATCH_SIZE", "MAX_NOISE_STD", "Batch", "GaussianDataModule", "StepIndices"]

MAX_NOISE_STD = 1e6
"""Largest ``data.noise_std``: the target has unit variance, so ``τ = 10^6`` is already all noise."""

BATCH_MODES = ("independent", "reused", "resample_every")
"""Fresh batch every step; the batch of step 1 at every step; a fresh batch every ``resample_every`` steps."""

_PURPOSE = {"directions": 0, "train": 1, "test": 2, "readout": 3}

DEFAULT_TEST_BATCH_SIZE = 4096
"""Rows per chunk of the readout's fit and test sets (``data.test_batch_size``): a few MB of inputs and features at
the widths of the packaged configs, and enough rows that ``X Wᵀ`` dominates the per-chunk overhead."""


class Batch(NamedTuple):
    """Inputs ``X`` ``(n_local, d)``, labels ``y`` ``(n_local,)`` and the step ``t`` they belong to."""

    X: Tensor
    y: Tensor
    step: int


class StepIndices:
    """Endless, resumable iterable of step numbers ``t = 1, 2, …`` (the training "dataloader").

    It holds no data, only the next step number. It deliberately has no ``state_dict``: Lightning prefetches one
    batch ahead, so a saved iterator position would be one step late; instead the data module starts it at
    ``trainer.global_step + 1`` whenever the loader is (re)built, which on resume is after the checkpoint's
    ``global_step`` has been restored, and checks every yielded step against the trainer.
    """

    def __init__(self, next_step: int = 1) -> None:
        self.next_step = next_step

    def __iter__(self) -> Iterator[Tensor]:
        while True:
            step = self.next_step
            self.next_step += 1
            yield torch.tensor(step)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
    return int(value)


def _seed_for(seed: int, purpose: str, draw: int) -> int:
    return int(np.random.SeedSequence([seed, _PURPOSE[purpose], draw]).generate_state(1, np.uint64)[0] >> 1)


class GaussianDataModule(L.LightningDataModule):
    """Inputs ``x ~ N(0, I_d)``, labels ``y = g(Bᵀx) + ε`` for the feature-learning steps and the readout.

    Args:
        input_dim: ``d``.
        batch_size: ``n``, the full batch of one step (split over DDP ranks; must divide by the world size).
        batches: one of :data:`BATCH_MODES`.
        resample_every: ``m`` for ``batches="resample_every"`` (and only then).
        target: a target name of :func:`spikelearn.functional.make_target`.
        target_components: single-index components of an ``"additive"`` target.
        noise_std: ``τ``, standard deviation of the label noise ``ε``.
        seed: seeds the directions ``B`` and every batch.
        test_size: held-out samples for the readout's test MSE (any size: they are drawn and scored in chunks; the
            standard error of the test MSE falls like ``1/√test_size``).
        readout_size: fresh samples the readout is fitted on (``0`` uses the batch of step 1), also drawn in chunks.
        test_batch_size: rows drawn at a time for the readout's fit and test sets; the readout's memory is bounded
            by it, not by ``test_size`` or ``readout_size``.
    """

    def __init__(
        self,
        input_dim: int = 256,
        batch_size: int = 256,
        batches: str = "independent",
        resample_every: int | None = None,
        target: str = "he1",
        target_components: Sequence[str] | None = None,
        noise_std: float = 0.0,
        seed: int = 0,
        test_size: int = 1024,
        readout_size: int = 1024,
        test_batch_size: int = DEFAULT_TEST_BATCH_SIZE,
    ) -> None:
        super().__init__()
        self.input_dim = _positive_int("data.input_dim", input_dim)
        self.batch_size = _positive_int("data.batch_size", batch_size)
        if batches not in BATCH_MODES:
            raise ValueError(f"Expected `data.batches` to be one of {list(BATCH_MODES)}, got {batches!r}.")
        if (batches == "resample_every") != (resample_every is not None):
            raise ValueError(
                "`data.resample_every` must be set exactly when `data.batches` is 'resample_every'; "
                f"got batches={batches!r}, resample_every={resample_every!r}."
            )
        self.batches = batches
        self.resample_every = None if resample_every is None else _positive_int("data.resample_every", resample_every)
        # y = g + ε has E y² = 1 + τ²: past MAX_NOISE_STD the labels are noise and y², τ² leave float32 (or float64)
        if isinstance(noise_std, bool) or not (
            isinstance(noise_std, (int, float)) and math.isfinite(noise_std) and 0 <= noise_std <= MAX_NOISE_STD
        ):
            raise ValueError(f"`data.noise_std` must be a number in [0, {MAX_NOISE_STD:g}], got {noise_std!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"`data.seed` must be an integer in [0, 2**63), got {seed!r}.")
        self.noise_std, self.seed = float(noise_std), seed
        self.test_size = _positive_int("data.test_size", test_size)
        if isinstance(readout_size, bool) or not isinstance(readout_size, int) or readout_size < 0:
            raise ValueError(f"`data.readout_size` must be an integer >= 0, got {readout_size!r}.")
        self.readout_size = readout_size
        self.test_batch_size = _positive_int("data.test_batch_size", test_batch_size)
        self.target: Target = make_target(target, target_components)
        # (d, r) float64 on the CPU; saved with the run (checkpoint + snapshots)
        self.directions = target_directions(self.input_dim, self.target.rank, _seed_for(seed, "directions", 0))
        self.save_hyperparameters()
        self._steps = StepIndices()

    @property
    def hparams_initial(self) -> AttributeDict:
        """The data fields as the loggers record them: each under ``data.<name>`` (``_class_path`` aside).

        Lightning merges the module's and the data module's fields into one set for the loggers and refuses two
        different values under one name, so ``model.seed`` != ``data.seed`` (a documented option) stopped every
        run with a logger; the prefix keeps both, as the CLI names them.
        """
        return AttributeDict({k if k.startswith("_") else f"data.{k}": v for k, v in super().hparams_initial.items()})

    # ----------------------------------------------------------------- batches
    def draw_index(self, step: int) -> int:
        """Which independent draw the batch of step ``t >= 1`` is: ``t``, ``1`` or ``⌈t/m⌉``."""
        if step < 1:
            raise ValueError(f"Steps are numbered from 1, got {step!r}.")
        if self.batches == "reused":
            return 1
        if self.batches == "resample_every":
            return (step - 1) // self.resample_every + 1
        return step

    def sample(
        self, size: int, purpose: str, draw: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        """``size`` fresh pairs ``(X (size, d), y (size,))``, a pure function of ``(seed, purpose, draw)``."""
        generator = torch.Generator(device=device).manual_seed(_seed_for(self.seed, purpose, draw))
        X = torch.randn(size, self.input_dim, generator=generator, device=device, dtype=dtype)
        noise_var = self.noise_std**2 + self.target.noise_variance
        y = self.target(X, self.directions.to(device=device, dtype=dtype))
        if noise_var > 0:
            y = y + math.sqrt(noise_var) * torch.randn(size, generator=generator, device=device, dtype=dtype)
        return X, y

    def full_batch(self, step: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Batch:
        """The whole batch (all ``n`` rows) of step ``t``."""
        X, y = self.sample(self.batch_size, "train", self.draw_index(step), device, dtype)
        return Batch(X, y, step)

    def local_batch(
        self, step: int, rank: int, world_size: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> Batch:
        """This rank's ``n / world_size`` rows of the batch of step ``t``."""
        batch = self.full_batch(step, device, dtype)
        rows = self.batch_size // world_size
        return Batch(batch.X[rank * rows : (rank + 1) * rows], batch.y[rank * rows : (rank + 1) * rows], step)

    # ---------------------------------------------------------- readout sets, in chunks
    def chunk_count(self, purpose: str) -> int:
        """How many chunks of at most ``test_batch_size`` rows the ``"test"`` or ``"readout"`` set has."""
        return math.ceil(self._set_size(purpose) / self.test_batch_size)

    def _set_size(self, purpose: str) -> int:
        if purpose == "test":
            return self.test_size
        if purpose == "readout":
            return self.readout_size or self.batch_size
        raise ValueError(f"Expected a readout set, 'test' or 'readout', got {purpose!r}.")

    def chunk(
        self, purpose: str, k: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        """Chunk ``k`` of the ``"test"`` or ``"readout"`` set: ``(X (m, d), y (m,))``, ``m <= test_batch_size``.

        A pure function of ``(seed, purpose, k)``; a set that fits in one chunk is drawn exactly as it was before sets
        were chunked. With ``readout_size = 0`` the readout set is the batch of step 1, cut in chunks.
        """
        count = self.chunk_count(purpose)
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < count:
            raise ValueError(f"Chunk {k!r} of the {purpose} set does not exist: it has chunks 0 to {count - 1}.")
        start, stop = k * self.test_batch_size, min((k + 1) * self.test_batch_size, self._set_size(purpose))
        if purpose == "readout" and self.readout_size == 0:
            batch = self.full_batch(1, device, dtype)  # (n, d): bounded by the batch-size check of setup
            return batch.X[start:stop], batch.y[start:stop]
        return self.sample(stop - start, purpose, k, device, dtype)

    def chunks(
        self,
        purpose: str,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's share of the ``"test"`` or ``"readout"`` set: chunks ``k ≡ rank (mod world_size)``, in order."""
        for k in range(rank, self.chunk_count(purpose), world_size):
            yield self.chunk(purpose, k, device, dtype)

    def test_set(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """Held-out pairs for the readout's test MSE (``test_size`` rows), whole: its chunks concatenated.

        For small sets and tests; the readout itself streams :meth:`chunks`.
        """
        return self._whole("test", device, dtype)

    def readout_set(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """Pairs the readout is fitted on, whole: ``readout_size`` fresh rows, or the batch of step 1 when it is 0."""
        return self._whole("readout", device, dtype)

    def _whole(self, purpose: str, device: torch.device | str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        parts = list(self.chunks(purpose, device=device, dtype=dtype))
        if len(parts) == 1:
            return parts[0]
        return torch.cat([X for X, _ in parts]), torch.cat([y for _, y in parts])

    # ---------------------------------------------------------- Lightning glue
    def setup(self, stage: str) -> None:
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world_size:
            raise ValueError(
                f"`data.batch_size` ({self.batch_size}) must be divisible by the world size ({world_size}) so that "
                "every rank holds an equal share of the full batch."
            )
        # every rank draws the full batch (X (n, d), y (n,)) on its device at each step: refuse it now, before any
        # output is written, rather than with an allocator error at step 1
        precision = str(getattr(self.trainer, "precision", "32-true"))
        itemsize = 8 if precision.startswith("64") else 4
        device = getattr(getattr(self.trainer, "strategy", None), "root_device", torch.device("cpu"))
        check_fits(
            f"`data.batch_size` x `data.input_dim` = {self.batch_size} x {self.input_dim} (one step's batch, "
            f"{itemsize}-byte floats)",
            self.batch_size * (self.input_dim + self.target.rank + 2) * itemsize,
            device,
        )

    def train_dataloader(self) -> StepIndices:
        start = self.trainer.global_step + 1 if self.trainer is not None else 1
        self._steps = StepIndices(start)
        return self._steps

    def on_after_batch_transfer(self, batch: Tensor, dataloader_idx: int) -> Batch:
        if not isinstance(batch, Tensor):  # already materialised (e.g. a user-supplied batch)
            return batch
        step = int(batch)
        trainer, module = self.trainer, self.trainer.lightning_module
        if step != trainer.global_step + 1:
            raise RuntimeError(
                f"Batch for step {step} requested at global step {trainer.global_step}: the step-keyed loader is out "
                "of sync with the trainer (was the run resumed from a checkpoint of another configuration?)."
            )
        dtype = module.W.dtype if hasattr(module, "W") else torch.get_default_dtype()
        return self.local_batch(step, trainer.global_rank, trainer.world_size, module.device, dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"directions": self.directions.clone(), "seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict["directions"]
        if saved.shape != self.directions.shape or not torch.equal(saved.to(self.directions.dtype), self.directions):
            raise ValueError(
                "The checkpoint's target directions `B` differ from this data module's (seed "
                f"{state_dict.get('seed')!r} in the checkpoint, {self.seed!r} now): resume with the run's own config."
            )
