"""Glue shared by the callbacks: which weights to watch, where files go, which loggers take what."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

__all__ = [
    "DEFAULT_PARAM",
    "check_params",
    "normalize_params",
    "run_directory",
    "target_directions",
    "TwoLayerTheory",
    "tensorboard_writers",
    "two_layer",
]

DEFAULT_PARAM = "W"
"""The watched weight of a module that provides the two-layer theory's inputs (:class:`TwoLayerTheory`), e.g. the
first layer of spikelearn's :class:`~spikelearn.module.TwoLayerModule`."""


def normalize_params(params: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``None`` (the module's default), one name, or several distinct names."""
    if params is None:
        return None
    names = (params,) if isinstance(params, str) else tuple(params)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"`params` must be a parameter name or a non-empty list of names, got {params!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"`params` lists a name twice: {list(names)!r}.")
    return names


def _two_d_names(pl_module: L.LightningModule) -> list[str]:
    return [name for name, p in pl_module.named_parameters() if p.ndim == 2]


def check_params(pl_module: L.LightningModule, params: tuple[str, ...] | None, owner: str) -> tuple[str, ...]:
    """Resolve the watched names against the module: each must be a 2-D parameter.

    Raises:
        ValueError: naming the bad entry and listing the module's 2-D parameters.
    """
    available = _two_d_names(pl_module)
    if params is None:
        if two_layer(pl_module) is None or DEFAULT_PARAM not in available:
            raise ValueError(
                f"{owner}: `params` must name the weights to watch for a {type(pl_module).__name__} (the default "
                f"{DEFAULT_PARAM!r} is the first layer of a module that provides the two-layer theory's inputs, "
                f"spikelearn.callbacks.TwoLayerTheory); its 2-D parameters are {available}."
            )
        params = (DEFAULT_PARAM,)
    for name in params:
        if name not in available:
            raise ValueError(
                f"{owner}: expected each of `params` to be a 2-D parameter of {type(pl_module).__name__}, one of "
                f"{available}; got {name!r}."
            )
    return params


@runtime_checkable
class TwoLayerTheory(Protocol):
    r"""What a module provides for the two-layer theory's fields (deflation, predictions, order-k fit, finite-N count).

    Any LightningModule with these members gets them, not only spikelearn's
    :class:`~spikelearn.module.TwoLayerModule`:

    * ``a``: the fixed second-layer weights, a tensor of shape ``(N,)``;
    * ``a_kind``: ``"gaussian"``, ``"rademacher"`` or ``"constant"`` (the law of ``a``);
    * ``activation``: the activation (a name, an :class:`~spikelearn.functional.activations.Activation` or a
      callable), for its Hermite coefficients;
    * ``schedule.exponents(t)``: :math:`\alpha_1..\alpha_t` of the steps taken;
    * ``eta(t)``: the step size :math:`\eta_t` of step ``t >= 1``.
    """

    a: Tensor
    a_kind: str
    activation: Any
    schedule: Any

    def eta(self, step: int) -> float: ...


def two_layer(pl_module: L.LightningModule) -> TwoLayerTheory | None:
    """The module when it provides what the two-layer theory needs (:class:`TwoLayerTheory`), else ``None``."""
    if isinstance(pl_module, TwoLayerTheory) and isinstance(getattr(pl_module, "a", None), Tensor):
        return pl_module
    return None


def target_directions(trainer: L.Trainer, d: int) -> Tensor | None:
    """``B`` ``(d, r)`` of the data module when it has one of matching ``d``, else ``None``."""
    B = getattr(getattr(trainer, "datamodule", None), "directions", None)
    if isinstance(B, Tensor) and B.ndim == 2 and B.shape[0] == d and B.shape[1] > 0:
        return B
    return None


def run_directory(trainer: L.Trainer, dirpath: str | Path | None) -> Path:
    """``dirpath`` or the run's log directory (``trainer.log_dir``; ``default_root_dir`` without a logger).

    ``trainer.log_dir`` broadcasts from rank zero, so call this on every rank (e.g. in ``setup``).
    """
    if dirpath is not None:
        return Path(dirpath)
    return Path(trainer.log_dir if trainer.log_dir is not None else trainer.default_root_dir)


def tensorboard_writers(trainer: L.Trainer) -> list[Any]:
    """The ``SummaryWriter`` of every TensorBoard logger of the trainer (none without one)."""
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
