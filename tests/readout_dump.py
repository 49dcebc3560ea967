"""A callback for the readout's DDP test (tests/test_readout_ddp.py): each rank writes the readout numbers it
returned to ``readout_rank<r>.json`` in the working directory, at full precision (TensorBoard keeps float32).

Imported by the CLI subprocesses through ``class_path`` (``tests/`` is put on their ``PYTHONPATH``)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback


class DumpReadout(Callback):
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after the module's on_train_end, where the readout runs
        path = Path(f"readout_rank{trainer.global_rank}.json")
        path.write_text(json.dumps({"world_size": trainer.world_size, **pl_module.readout_metrics}))
