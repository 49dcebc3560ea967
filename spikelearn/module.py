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
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from spikelearn._memory import check_fits
from spikelearn.functional import activations as F_act
from spikelearn.functional import model as F
from spikelearn.functional.schedule import StepSchedule
from spikelearn.readout import readout_bytes, streamed_readout

__all__ = [
    "RESUMABLE_FIELDS",
    "DivergenceError",
    "TwoLayerModule",
    "check_resume_config",
    "load_checkpoint",
    "load_weights",
]

RESUMABLE_FIELDS = frozenset(
    {"model.readout", "model.readout_ridge", "model.max_norm_growth", "data.test_size", "data.readout_size",
     "data.test_batch_size"}
)
"""Model / data fields a resume may change: they do not enter ``W_0 … W_T`` (readout and divergence guard only).
Every other model and data field, and ``trainer.precision``, must equal the checkpoint's."""

def _W0_bytes(N: int, d: int) -> int:
    """Peak bytes of drawing W0: the float32 result plus the float64 draw, whole up to 4M entries, else one block."""
    return 4 * N * d + 16 * min(N * d, F.W0_ONE_SHOT_ENTRIES)


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
        readout: fit ``a`` by ridge regression on ``σ(W_T x)/√N`` after training and log the train and test MSE
            and the test MSE's standard error (streamed over the data module's chunks, :mod:`spikelearn.readout`).
        readout_ridge: ``λ`` of the readout (``0``: the minimum-norm least-squares fit).
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
        check_fits(
            f"`model.width` x `model.input_dim` = {self.width} x {self.input_dim} (drawing W0)",
            _W0_bytes(self.width, self.input_dim),
        )
        generator = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(F.init_first_layer(self.width, self.input_dim, generator, init))  # (N, d)
        self.register_buffer("a", F.init_second_layer(self.width, generator, readout_init))  # (N,)
        self.register_buffer("W0_norm", self.W.detach().norm())
        self.save_hyperparameters(ignore=[] if isinstance(activation, str) else ["activation"])
        self.readout_metrics: dict[str, float] = {}
        self._requeue = _DeferredSignal()

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
        self._check_readout_fits(datamodule)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainer = self._trainer
        if trainer is not None:
            checkpoint["spikelearn"] = {"precision": str(trainer.precision)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # called by Lightning before it loads the weights: a resume with another config is refused here, naming the
        # fields, instead of a torch "size mismatch" or a silent change of the run
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        check_resume_config(
            checkpoint,
            model=dict(self.hparams),
            data=dict(datamodule.hparams) if datamodule is not None and hasattr(datamodule, "hparams") else None,
            precision=None if trainer is None else trainer.precision,
            source=str(getattr(trainer, "ckpt_path", None) or "the checkpoint"),
        )
        # Lightning restores the state dict *before* the precision plugin converts the module, so under
        # precision="64-true" a float64 W_t was rounded into the still-float32 parameter and resumed runs drifted
        # (~3e-8). Converting first (idempotent; the plugin converts again later) keeps resume bit-exact.
        if trainer is not None:
            trainer.precision_plugin.convert_module(self)

    # ------------------------------------------------------------------ SLURM requeue at a step boundary
    def on_train_start(self) -> None:
        # Lightning's SLURM handler saves the HPC checkpoint from inside the signal handler, i.e. at any bytecode of
        # a step: after WeightSnapshot wrote step t but before SpectrumMonitor wrote its record line, which the
        # resumed run then never writes. Deferring the handler to the end of the step (after every callback) makes
        # the checkpoint agree with the files on disk.
        self._requeue.install(self.trainer)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._requeue.flush(self.trainer)

    def on_train_end(self) -> None:
        self._requeue.flush(self.trainer)
        self._requeue.uninstall()
        self._fit_readout_at_end()

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
        """Ridge readout on ``σ(W_T x)/√N`` (Ba et al.), streamed over the data module's chunks.

        Returns ``readout/train_mse``, ``readout/test_mse`` and ``readout/test_mse_stderr`` (the standard error of
        the test MSE over ``data.test_size`` rows). Under DDP each rank reads its share of the chunks and every rank
        returns the same numbers; every rank must call it.
        """
        trainer = self._trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        dtype, device = self.W.dtype, self.W.device

        def chunks(purpose: str) -> Callable[[], Any]:
            if hasattr(datamodule, "chunks"):
                return lambda: datamodule.chunks(purpose, rank, world_size, device, dtype)
            # a data module with only whole sets (readout_set / test_set): rank zero reads each set as one chunk
            whole = datamodule.readout_set if purpose == "readout" else datamodule.test_set
            return lambda: [whole(device, dtype)] if rank == 0 else []

        def reduce_sum(tensor: Tensor) -> Tensor:
            return trainer.strategy.reduce(tensor, reduce_op="sum") if world_size > 1 else tensor

        with torch.no_grad():
            result = streamed_readout(
                self.W, self.activation, self.readout_ridge, chunks("readout"), chunks("test"), reduce_sum
            )
        return {
            "readout/train_mse": result.train_mse,
            "readout/test_mse": result.test_mse,
            "readout/test_mse_stderr": result.test_mse_stderr,
        }

    def _check_readout_fits(self, datamodule: Any) -> None:
        # the sets stream in chunks; what must fit is the N x N system and one chunk
        chunk_rows = getattr(datamodule, "test_batch_size", None)
        if not self.readout or chunk_rows is None:
            return
        itemsize = max(torch.finfo(self.W.dtype).bits // 8, 4)
        check_fits(
            f"`model.width` = {self.width} with `model.readout` true (its N x N normal equations in float64) and "
            f"`data.test_batch_size` x `data.input_dim` = {chunk_rows} x {self.input_dim} (one chunk of the readout sets)",
            readout_bytes(self.width, self.input_dim, chunk_rows, itemsize),
            self.W.device,
        )

    def _fit_readout_at_end(self) -> None:
        if not self.readout or self.trainer.datamodule is None:
            return
        self.readout_metrics = self.fit_readout(self.trainer.datamodule)
        if self.trainer.is_global_zero:
            for logger in self.trainer.loggers:
                logger.log_metrics(self.readout_metrics, step=self.global_step)


# ---------------------------------------------------------------------------------------------- checkpoints
def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
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
        reason = _weights_only_reason(str(err))
        if reason is None:
            raise ValueError(f"{path} is not a readable PyTorch checkpoint ({_load_failure_detail(str(err))}).") from err
        raise ValueError(
            f"Refused to load {path}: it is not a weights-only checkpoint ({reason}). spikelearn reads "
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


def _weights_only_reason(message: str) -> str | None:
    """Torch's own reason a weights-only load refused a pickle (``None`` when it is not such a refusal).

    Torch words it differently by version and payload: "WeightsUnpickler error: Unsupported global: GLOBAL exec
    was not an allowed global by default. …" or "Trying to load unsupported GLOBAL posix.system whose module posix
    is blocked."; the first sentence of that line is kept.

    Example:
        >>> _weights_only_reason("Weights only load failed. …\\n\\nTrying to load unsupported GLOBAL posix.system whose "
        ...                      "module posix is blocked.\\n\\nCheck the documentation of torch.load …")
        'Trying to load unsupported GLOBAL posix.system whose module posix is blocked'
    """
    for line in (line.strip() for line in message.splitlines()):
        if line.startswith("WeightsUnpickler") and "error:" in line:
            line = line.split("error:", 1)[1].strip()
        if "GLOBAL" in line and not line.lower().startswith("weights only load failed"):
            return line.split(". ")[0].rstrip(".")
    return None


def _load_failure_detail(message: str) -> str:
    """The informative line of a failed ``torch.load`` (torch's boilerplate skipped)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("WeightsUnpickler") and line.split("error:", 1)[-1].strip():
            return line.split("error:", 1)[1].strip()
    for line in lines:
        if line.lower().startswith(("unsupported", "trying to load")):
            return line
    return lines[0] if lines else "no detail"


def _comparable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _comparable(v) for k, v in value.items()}
    return value


def _unified_precision(value: Any) -> str | None:
    if value is None:
        return "32-true"  # the Trainer's default
    from lightning.fabric.connector import _convert_precision_to_unified_args

    try:
        return str(_convert_precision_to_unified_args(value))
    except (ValueError, TypeError):
        return str(value)


def check_resume_config(
    checkpoint: Mapping[str, Any],
    *,
    model: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    precision: Any = None,
    source: str = "the checkpoint",
) -> None:
    """Refuse to resume ``checkpoint`` with model / data fields or a precision other than the ones it was made with.

    A resumed run must continue the same trajectory ``W_0, W_1, …``: Lightning would otherwise load the weights
    into a model of another width (a torch "size mismatch"), silently keep the checkpoint's model fields over the
    command line (LightningCLI), or round a float64 run into float32. Fields in :data:`RESUMABLE_FIELDS` and every
    trainer field but the precision (``max_steps``, callbacks, loggers, …) may change.

    Args:
        checkpoint: a Lightning checkpoint dict (``hyper_parameters``, ``datamodule_hyper_parameters``).
        model: the model fields of the resuming run (``None``: not compared).
        data: the data fields of the resuming run (``None``: not compared).
        precision: the resuming run's ``trainer.precision`` (``None`` is the Trainer's default, ``32-true``);
            compared with the one the checkpoint records, or with the dtype of its ``W`` for older checkpoints.
        source: how to name the checkpoint in the message (its path).

    Raises:
        ValueError: naming every changed field with its value in the checkpoint and now.

    Example:
        >>> ckpt = {"hyper_parameters": {"width": 64, "seed": 0}, "spikelearn": {"precision": "64-true"}}
        >>> check_resume_config(ckpt, model={"width": 64, "seed": 0}, precision="64-true")
        >>> check_resume_config(ckpt, model={"width": 64, "seed": 5}, precision="64-true")
        Traceback (most recent call last):
        ...
        ValueError: Cannot resume the checkpoint with a changed config: `model.seed` was 0, now 5. ...
    """
    changes: list[str] = []
    if model is not None and not isinstance(checkpoint.get("hyper_parameters"), Mapping):
        import warnings

        warnings.warn(f"{source} has no hyper_parameters: its model fields cannot be compared with this run's, so "
                      "the resume is not checked for a changed config (was it written by spikelearn?).", stacklevel=2)
    for prefix, key, current in (("model", "hyper_parameters", model), ("data", "datamodule_hyper_parameters", data)):
        saved = checkpoint.get(key)
        if current is None or not isinstance(saved, Mapping):
            continue
        for name in sorted(set(saved) & set(current)):
            field = f"{prefix}.{name}"
            if name.startswith("_") or field in RESUMABLE_FIELDS:
                continue
            if _comparable(saved[name]) != _comparable(current[name]):
                changes.append(f"`{field}` was {saved[name]!r}, now {current[name]!r}")
    now = _unified_precision(precision)
    recorded = (checkpoint.get("spikelearn") or {}).get("precision") if isinstance(checkpoint.get("spikelearn"), Mapping) else None
    if recorded is not None:
        if _unified_precision(recorded) != now:
            changes.append(f"`trainer.precision` was {recorded!r}, now {now!r}")
    else:
        W = (checkpoint.get("state_dict") or {}).get("W") if isinstance(checkpoint.get("state_dict"), Mapping) else None
        if isinstance(W, Tensor) and W.dtype == torch.float64 and not now.startswith("64"):
            changes.append(f"`trainer.precision`: the checkpoint's W is float64 (64-true), now {now!r}")
    if changes:
        raise ValueError(
            f"Cannot resume {source} with a changed config: {'; '.join(changes)}. A resume continues the same run: "
            "use the run's own model, data and precision settings (trainer fields such as max_steps may change), "
            "or start a new run without --ckpt_path."
        )
    saved = checkpoint.get("hyper_parameters")
    _check_checkpoint_contents(checkpoint, saved if isinstance(saved, Mapping) else model, source)


def _check_checkpoint_contents(checkpoint: Mapping[str, Any], model: Mapping[str, Any] | None, source: str) -> None:
    """Refuse, naming ``source``, a checkpoint whose ``W`` / ``a`` do not have the shapes its own model fields give
    (``hyper_parameters``, else the resuming run's), hold
    non-finite values, or whose callback states are not dicts: Lightning would fail later with a torch "size
    mismatch", blame a divergence many steps on, or a callback's ``TypeError``."""
    state = checkpoint.get("state_dict")
    width = model.get("width") if model is not None else None
    input_dim = model.get("input_dim") if model is not None else None
    if isinstance(state, Mapping):
        expected = {"W": (width, input_dim), "a": (width,)}
        for name, shape in expected.items():
            tensor = state.get(name)
            if tensor is None:
                continue
            if not isinstance(tensor, Tensor):
                raise ValueError(f"{source}: its `state_dict.{name}` is a {type(tensor).__name__}, not a tensor: the "
                                 "checkpoint is damaged or not a spikelearn checkpoint.")
            if all(isinstance(n, int) for n in shape) and tuple(tensor.shape) != shape:
                raise ValueError(f"{source}: its `{name}` has shape {tuple(tensor.shape)}, but model.width x "
                                 f"model.input_dim = {width} x {input_dim} needs {shape}: the checkpoint is damaged "
                                 "or not this run's.")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{source}: its `{name}` has non-finite entries: the checkpoint is damaged (a run "
                                 "stops at its first non-finite weight, before checkpointing it).")
    callbacks = checkpoint.get("callbacks")
    if callbacks is not None:
        bad = [str(key) for key, value in callbacks.items() if not isinstance(value, Mapping)] if isinstance(
            callbacks, Mapping) else ["(all)"]
        if bad:
            raise ValueError(f"{source}: the callback state of {', '.join(bad)[:300]} is not a dict: the checkpoint "
                             "is damaged.")


class _DeferredSignal:
    """Hold a cluster's requeue signal (Lightning's SLURM handler) until the end of the current step.

    Only installed when Lightning has put a handler on the signal (SLURM auto-requeue); under DDP the ranks agree
    at every step end whether any of them got the signal, so they all save the checkpoint at the same step.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.handler: Callable[..., Any] | None = None
        self.pending = False

    def install(self, trainer: Any) -> None:
        if self.handler is not None or threading.current_thread() is not threading.main_thread():
            return
        environment = getattr(trainer.strategy, "cluster_environment", None)
        if environment is None:
            environment = getattr(getattr(trainer, "_accelerator_connector", None), "cluster_environment", None)
        signum = getattr(environment, "requeue_signal", None) or getattr(signal, "SIGUSR1", None)
        if signum is None:
            return
        handler = signal.getsignal(signum)
        if not callable(handler):  # SIG_DFL / SIG_IGN: Lightning handles nothing on it, so neither do we
            return
        self.signum, self.handler, self.pending = signum, handler, False
        signal.signal(signum, self._defer)

    def _defer(self, signum: int, frame: Any) -> None:
        self.pending = True

    def flush(self, trainer: Any) -> None:
        if self.handler is None:
            return
        pending = self.pending
        if trainer.world_size > 1:
            pending = bool(trainer.strategy.reduce_boolean_decision(pending, all=False))
        if pending:
            self.pending = False
            self.handler(self.signum, None)

    def uninstall(self) -> None:
        if self.handler is not None and self.signum is not None and signal.getsignal(self.signum) == self._defer:
            signal.signal(self.signum, self.handler)
        self.signum, self.handler, self.pending = None, None, False
