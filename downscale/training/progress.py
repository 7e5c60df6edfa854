"""Training progress for a caller that shows it (the Prefect flow's progress artifact), without the library
knowing who listens."""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl

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
