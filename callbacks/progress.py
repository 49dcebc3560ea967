"""``StepProgressBar``: a rich progress bar that counts gradient steps, not epochs.

spikelearn runs one endless epoch of full-batch steps, so Lightning's ``Epoch 0/-2 … v_num: 0`` says nothing. This
bar reads ``step  ━━━━━━━━  2/50  0:00:03  η_t: 42.2  outliers: 3  loss: 0.481``: the steps done out of
``max_steps``, the step size ``η_t`` of the last step, the outlier count of the last analysed step (from the
:class:`~spikelearn.callbacks.SpectrumMonitor` in ``trainer.callbacks``, with its marginal ones) and the loss.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

__all__ = ["StepProgressBar", "step_metrics"]


def _short(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else str(value)


def step_metrics(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, str]:
    """What the bar shows after the last step: ``η_t``, ``outliers`` and ``loss``, as short strings.

    ``η_t`` comes from the module's ``eta(step)`` (spikelearn's schedule), ``outliers`` from the newest record of
    the first :class:`~spikelearn.callbacks.SpectrumMonitor` (``"3 (1 marginal)"`` when the cut decides one),
    ``loss`` from the logged ``train/loss``; each is left out when it is not known.
    """
    from .summary import find_monitor

    out: dict[str, str] = {}
    step = trainer.global_step
    eta = getattr(pl_module, "eta", None)
    if step > 0 and callable(eta):
        try:
            out["η_t"] = _short(float(eta(step)))
        except (TypeError, ValueError):
            pass
    monitor = find_monitor(trainer)
    if monitor is not None and monitor.history:
        record = monitor.history[-1]
        count = record.get("outliers")
        if isinstance(count, int):
            marginal = record.get("outliers_marginal")
            out["outliers"] = f"{count} ({marginal} marginal)" if isinstance(marginal, int) and marginal else str(count)
    loss = trainer.progress_bar_metrics.get("train/loss")
    if loss is not None:
        out["loss"] = _short(float(loss))
    return out


class StepProgressBar(RichProgressBar):
    """``RichProgressBar`` over the gradient steps ``t/T`` with ``η_t``, the outlier count and the loss.

    Args:
        leave: keep the finished bar on screen.
        **kwargs: passed to :class:`~lightning.pytorch.callbacks.RichProgressBar` (``refresh_rate``, ``theme``, …).
    """

    def __init__(self, leave: bool = True, **kwargs: Any) -> None:
        super().__init__(leave=leave, **kwargs)

    @property
    def total_train_batches(self) -> int | float:
        # the whole run, not the remaining steps: the bar's position is the global step (resumes continue at t)
        max_steps = self.trainer.max_steps
        return max_steps if max_steps is not None and max_steps > 0 else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        return "step"

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return step_metrics(trainer, pl_module)
