"""Training progress: log lines for whoever reads the log (:class:`TrainingLog`, always on), and reports for
a caller that shows progress its own way (the Prefect flow's progress artifact, :class:`ProgressCallback`),
without the library knowing who listens."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import lightning.pytorch as pl
import torch

from downscale.progress_log import INTERVAL_S, ProgressLog

#: ``report(step, max_steps)``: optimizer steps done and the training's total.
ProgressReport = Callable[[int, int], None]


class ProgressCallback(pl.Callback):
    """Calls ``report(step, max_steps)`` on rank 0 every ``every_n_steps`` optimizer steps and at the end."""

    def __init__(self, report: ProgressReport, every_n_steps: int = 10) -> None:
        self.report, self.every_n_steps = report, max(1, every_n_steps)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.is_global_zero and trainer.global_step % self.every_n_steps == 0:
            self.report(trainer.global_step, trainer.max_steps)

    def on_train_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.is_global_zero:
            self.report(trainer.global_step, trainer.max_steps)


class TrainingLog(pl.Callback):
    """Logs, on rank 0, ``train: step 120/240 (50 %), 2.1 steps/s, ETA 57 s — loss 0.4123`` at the first
    step, every ``interval_s`` seconds or tenth of the run (whichever comes first) and at the end; a
    heartbeat line fills a longer silence (a validation), so the log never goes quiet for more than
    ``interval_s``. The loss is the mean training loss of the steps since the previous line; it is summed
    on the device and read only when a line is logged (no per-step synchronisation)."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._progress: ProgressLog | None = None
        self._heartbeat = ExitStack()
        self._loss_sum: torch.Tensor | float = 0.0
        self._loss_steps = 0

    def on_train_start(self, trainer: pl.Trainer, *args: object) -> None:
        if not trainer.is_global_zero:
            return
        self._progress = ProgressLog("train", trainer.max_steps, "steps", start=trainer.global_step,
                                     interval_s=self.interval_s)
        self._heartbeat.enter_context(self._progress.heartbeat())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           *args: object) -> None:
        if self._progress is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._loss_sum = self._loss_sum + loss.detach().float()
            self._loss_steps += 1
        self._progress.update(trainer.global_step, self._mean_loss)

    def _mean_loss(self) -> str:
        if not self._loss_steps:
            return ""
        mean = float(self._loss_sum) / self._loss_steps
        self._loss_sum, self._loss_steps = 0.0, 0
        return f"loss {mean:.4g}"

    def on_train_end(self, trainer: pl.Trainer, *args: object) -> None:
        self._stop()

    def on_exception(self, trainer: pl.Trainer, *args: object) -> None:
        self._stop()

    def _stop(self) -> None:
        self._heartbeat.close()
        self._progress = None
