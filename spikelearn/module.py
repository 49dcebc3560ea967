"""The two-layer network as a LightningModule: plain SGD on ``W`` with learning rate ``η_t √N`` (SPEC §1).

``W`` (``(N, d)``) is the only trainable parameter; ``a`` (``(N,)``) is a buffer, fixed during the
feature-learning steps. The loss and gradient are the functional ones of :mod:`spikelearn.functional.model`;
autograd of :func:`~spikelearn.functional.model.loss` is exactly ``-G(W)``, so one optimizer step is
``W_t = W_{t-1} + η_t √N G(W_{t-1})``. Under DDP each rank holds ``n / world_size`` rows and the averaged
gradient is the full-batch one.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from spikelearn.functional import activations as F_act
from spikelearn.functional import model as F
from spikelearn.functional.schedule import StepSchedule

__all__ = ["DivergenceError", "TwoLayerModule", "load_checkpoint", "load_weights"]


class DivergenceError(RuntimeError):
    """Training diverged: the loss or ``W`` became non-finite, or ``‖W‖_F`` grew past the allowed factor."""


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
    return value


class TwoLayerModule(L.LightningModule):
    """``f(x) = a·σ(Wx)/√N`` trained by full-batch GD with ``η_t = c_t N^{α_t}``.

    Args:
        width: ``N``.
        input_dim: ``d`` (linked to ``data.input_dim`` by the CLI).
        activation: a name of :data:`spikelearn.functional.ACTIVATIONS` (default shifted tanh).
        init: first-layer init, one of :data:`~spikelearn.functional.model.INIT_KINDS`.
        readout_init: second-layer init, one of :data:`~spikelearn.functional.model.READOUT_KINDS`.
        step_c: ``c_1, c_2, …`` of the listed steps.
        step_alpha: ``α_1, α_2, …`` of the listed steps (outside ``[0, 1/2)`` warns: the theory does not apply).
        step_tail: how ``η_t`` continues after the listed steps (``"constant"`` or ``"inverse_sqrt"``).
        loss: ``"mse"`` or ``"correlation"``.
        seed: seeds ``W0`` and ``a``.
        readout: fit ``a`` by ridge regression on ``σ(W_T x)/√N`` after training and log train/test MSE.
        readout_ridge: ``λ`` of the readout.
        max_norm_growth: stop with :class:`DivergenceError` when ``‖W_t‖_F > max_norm_growth · ‖W_0‖_F``.
    """

    def __init__(
        self,
        width: int = 256,
        input_dim: int = 256,
        activation: str = "shifted_tanh",
        init: str = "gaussian",
        readout_init: str = "gaussian",
        step_c: Sequence[float] = (1.0, 1.0),
        step_alpha: Sequence[float] = (0.25, 0.25),
        step_tail: str = "constant",
        loss: str = "mse",
        seed: int = 0,
        readout: bool = False,
        readout_ridge: float = 1e-3,
        max_norm_growth: float = 1e3,
    ) -> None:
        super().__init__()
        self.width = _positive_int("model.width", width)
        self.input_dim = _positive_int("model.input_dim", input_dim)
        self.activation = F_act.get_activation(activation)
        if loss not in F.LOSSES:
            raise ValueError(f"Expected `model.loss` to be one of {list(F.LOSSES)}, got {loss!r}.")
        self.loss_kind = loss
        self.schedule = StepSchedule.validated(step_c, step_alpha, step_tail)
        self._check_step_sizes_finite()
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"`model.seed` must be an integer in [0, 2**63), got {seed!r}.")
        if not (isinstance(readout_ridge, (int, float)) and math.isfinite(readout_ridge) and readout_ridge >= 0):
            raise ValueError(f"`model.readout_ridge` must be a finite number >= 0, got {readout_ridge!r}.")
        if not (isinstance(max_norm_growth, (int, float)) and max_norm_growth > 1):
            raise ValueError(f"`model.max_norm_growth` must be a number > 1, got {max_norm_growth!r}.")
        self.readout, self.readout_ridge, self.max_norm_growth = bool(readout), float(readout_ridge), float(max_norm_growth)
        self.a_kind = readout_init
        generator = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(F.init_first_layer(self.width, self.input_dim, generator, init))  # (N, d)
        self.register_buffer("a", F.init_second_layer(self.width, generator, readout_init))  # (N,)
        self.register_buffer("W0_norm", self.W.detach().norm())
        self.save_hyperparameters(ignore=[] if isinstance(activation, str) else ["activation"])
        self.readout_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ math glue
    def forward(self, X: Tensor) -> Tensor:
        """Network output ``(n,)`` for inputs ``X`` ``(n, d)``."""
        return F.network_output(self.W, self.a, X, self.activation)

    def eta(self, step: int) -> float:
        """``η_t`` of step ``t >= 1`` at this width."""
        return self.schedule.eta(step, self.width)

    def _check_step_sizes_finite(self) -> None:
        # the listed steps and the first tail step bound every η_t (constant or decaying tail)
        for t in range(1, len(self.schedule.c) + 2):
            try:
                eta = self.eta(t)
            except OverflowError:
                eta = math.inf
            if not math.isfinite(eta):
                i = min(t, len(self.schedule.c)) - 1
                raise ValueError(
                    f"`model.step_c[{i}]` = {self.schedule.c[i]!r} and `model.step_alpha[{i}]` = {self.schedule.alpha[i]!r} "
                    f"give eta_{t} = c N^alpha = inf at model.width = {self.width}: lower them."
                )

    def _check_input_dim(self, d: Any, source: str) -> None:
        if d != self.input_dim:
            raise ValueError(
                f"`model.input_dim` ({self.input_dim}) must equal the data's input dimension, got {d} from {source} "
                "(the CLI links data.input_dim into model.input_dim; in Python pass the same d to both)."
            )

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if getattr(datamodule, "input_dim", None) is not None:
            self._check_input_dim(datamodule.input_dim, "`data.input_dim`")
        # the SGD learning rate η_t √N must be a number of W's dtype (a float32 overflow is an error deep in torch)
        largest = torch.finfo(self.W.dtype).max
        for t in range(1, len(self.schedule.c) + 2):
            lr = self.eta(t) * math.sqrt(self.width)
            if lr > largest:
                i = min(t, len(self.schedule.c)) - 1
                raise ValueError(
                    f"`model.step_c[{i}]` = {self.schedule.c[i]!r} gives a learning rate eta_{t} sqrt(N) = {lr:.3g} beyond "
                    f"the largest {self.W.dtype} ({largest:.3g}): lower it, or train in float64 (trainer.precision=64-true)."
                )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning restores the state dict *before* the precision plugin converts the module, so under
        # precision="64-true" a float64 W_t was rounded into the still-float32 parameter and resumed runs drifted
        # (~3e-8). Converting first (idempotent; the plugin converts again later) keeps resume bit-exact.
        trainer = self._trainer
        if trainer is not None:
            trainer.precision_plugin.convert_module(self)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        X, y, step = batch
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            self._check_input_dim(X.shape[-1], f"a batch of shape {tuple(X.shape)}")
        value = F.loss(self.W, self.a, X, y, self.activation, self.loss_kind)
        if not torch.isfinite(value):
            raise DivergenceError(f"The loss at step {step} (eta_t = {self.eta(step):.6g}) is {float(value.detach())}: training diverged.")
        self.log("train/loss", value, sync_dist=True, prog_bar=True, batch_size=X.shape[0])
        self.log("train/eta", self.eta(step), batch_size=X.shape[0])
        return value

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.SGD([self.W], lr=1.0, momentum=0.0, weight_decay=0.0)
        sqrt_N = math.sqrt(self.width)
        # LambdaLR's index i counts completed steps, so the lr for step t = i + 1 is η_t √N
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: self.eta(i + 1) * sqrt_N)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Callable[[], Any] | None = None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self._check_finite_and_bounded(self.global_step + 1)

    def _check_finite_and_bounded(self, step: int) -> None:
        W = self.W.detach()
        norm = float(W.norm())
        where = f"after step {step} (eta_t = {self.eta(step):.6g})"
        if not math.isfinite(norm):
            raise DivergenceError(f"W has non-finite entries {where}: training diverged.")
        limit = self.max_norm_growth * float(self.W0_norm)
        if norm > limit:
            raise DivergenceError(
                f"||W||_F = {norm:.6g} {where} exceeds model.max_norm_growth x ||W_0||_F = {limit:.6g}: training diverged."
            )

    # ------------------------------------------------------------------ readout
    def fit_readout(self, datamodule: Any) -> dict[str, float]:
        """Ridge readout on ``σ(W_T x)/√N`` (Ba et al.): returns ``readout/train_mse`` and ``readout/test_mse``."""
        dtype, device = self.W.dtype, self.W.device
        X_fit, y_fit = datamodule.readout_set(device, dtype)
        X_test, y_test = datamodule.test_set(device, dtype)
        with torch.no_grad():
            train_mse, test_mse = F.readout_errors(self.W, X_fit, y_fit, X_test, y_test, self.activation, self.readout_ridge)
        return {"readout/train_mse": train_mse, "readout/test_mse": test_mse}

    def on_train_end(self) -> None:
        if not self.readout or self.trainer.datamodule is None:
            return
        self.readout_metrics = self.fit_readout(self.trainer.datamodule)
        if self.trainer.is_global_zero:
            for logger in self.trainer.loggers:
                logger.log_metrics(self.readout_metrics, step=self.global_step)


# ---------------------------------------------------------------------------------------------- checkpoints
def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a Lightning checkpoint with weights-only unpickling (tensors, numbers, strings, lists, dicts).

    A checkpoint is a pickle, and a pickle can run arbitrary code while it is read; this loader never lets it
    (``torch.load(..., weights_only=True)``), so a checkpoint from an untrusted source is refused, not executed.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: naming the file and the reason, if the file holds objects other than plain tensors and
            containers (e.g. a crafted ``__reduce__``) or is not a checkpoint dict at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path}.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines()]
        detail = next((line.split("error:", 1)[1].strip() for line in lines if line.startswith("WeightsUnpickler")), "")
        if "Unsupported global" not in detail and "Unsupported operand" not in detail:
            raise ValueError(f"{path} is not a readable PyTorch checkpoint ({detail or lines[0]}).") from err
        raise ValueError(
            f"Refused to load {path}: it is not a weights-only checkpoint ({detail.split('. ')[0]}). spikelearn reads "
            "checkpoints with weights_only=True because unpickling arbitrary objects can execute code; load it "
            "with weights_only=False only if you trust its source."
        ) from err
    except Exception as err:  # torch raises RuntimeError, EOFError, struct.error, … for files that are not checkpoints
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {err}).") from err
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} is not a Lightning checkpoint: it holds a {type(checkpoint).__name__}, not a dict.")
    return checkpoint


def load_weights(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Tensor]:
    """The module's tensors (``W``, ``a``, ``W0_norm``) of a checkpoint, read weights-only (see :func:`load_checkpoint`).

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: if the file is refused by :func:`load_checkpoint` or has no ``state_dict`` of tensors.
    """
    checkpoint = load_checkpoint(path, map_location)
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} has no `state_dict` of tensors; keys present: {sorted(map(str, checkpoint))}.")
    return state
