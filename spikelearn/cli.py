"""``spikelearn fit --config <yaml>``: the LightningCLI entry point.

The model and data are spikelearn's :class:`~spikelearn.module.TwoLayerModule` and
:class:`~spikelearn.data.GaussianDataModule`; ``data.input_dim`` is linked to ``model.input_dim``. Packaged
example configs live in :mod:`spikelearn.configs` (``spikelearn fit --config $(spikelearn-config two_step_reused)``
or the path printed by :func:`config_path`).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

# Lightning 2.6 calls jsonargparse APIs deprecated in 4.49; the warnings say nothing about the user's config.
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI  # noqa: E402

from spikelearn.data import GaussianDataModule  # noqa: E402
from spikelearn.module import TwoLayerModule  # noqa: E402

__all__ = ["CONFIG_NAMES", "SpikelearnCLI", "build_cli", "config_path", "main"]

CONFIG_NAMES = ("two_step_independent", "two_step_reused", "many_steps")
"""Packaged example configs."""

TRAINER_DEFAULTS: dict[str, Any] = {
    "max_steps": 2,
    "max_epochs": -1,
    "use_distributed_sampler": False,  # the data module shards the full batch by rank itself
    "num_sanity_val_steps": 0,
    "log_every_n_steps": 1,
    "enable_model_summary": False,
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "spikelearn"},
    },
}


def config_path(name: str) -> Path:
    """Path of a packaged example config.

    Raises:
        ValueError: for an unknown name (lists the known ones).

    Example:
        >>> config_path("two_step_reused").name
        'two_step_reused.yaml'
    """
    if name not in CONFIG_NAMES:
        raise ValueError(f"Expected a config name in {list(CONFIG_NAMES)}, got {name!r}.")
    return Path(str(resources.files("spikelearn.configs").joinpath(f"{name}.yaml")))


class SpikelearnCLI(LightningCLI):
    """LightningCLI with ``data.input_dim`` linked into ``model.input_dim``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.input_dim", "model.input_dim")


def build_cli(args: list[str] | None = None, run: bool = True) -> SpikelearnCLI:
    """Parse ``args`` (default ``sys.argv[1:]``) and, when ``run``, execute the subcommand; returns the CLI."""
    return SpikelearnCLI(
        TwoLayerModule,
        GaussianDataModule,
        trainer_defaults=TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Console entry point ``spikelearn``."""
    build_cli(args)


if __name__ == "__main__":
    main()
