"""Two seeds are a documented option (issue 18, row 3): ``model.seed`` != ``data.seed`` trains with a logger, and
the logger records both (the data fields under ``data.<name>``)."""

from __future__ import annotations

import pytest
from lightning.pytorch.loggers import TensorBoardLogger
from reliability_helpers import run_cli, tiny_data, tiny_module, tiny_trainer, write_run_config


def test_different_model_and_data_seeds_train_with_a_logger(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="run", default_hp_metric=False)
    tiny_trainer(tmp_path, 1, logger=logger).fit(tiny_module(seed=1), tiny_data(seed=0))
    assert logger.hparams["seed"] == 1 and logger.hparams["data.seed"] == 0


@pytest.mark.slow
def test_cli_with_model_seed_1_and_a_logger_trains(tmp_path):
    config = write_run_config(tmp_path / "run.yaml", tmp_path, max_steps=2, checkpoint_every=None, logger=True)
    run_cli(config, "--model.seed", "1", cwd=tmp_path)
