"""The training progress bar counts optimizer steps out of `trainer.max_steps`.

The data streams, so Lightning knows no epoch length: its bars read `Epoch 0/-2` and
`Validation 1/--`. A run is defined by its optimizer steps, so that is what the bar counts
(whatever the gradient accumulation, and from the resumed step on a resume).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar with `Steps k/max_steps` as its training bar."""

    def on_train_start(self, trainer: Trainer, *args: Any) -> None:
        # Set here, not at the epoch start: Lightning skips that hook when it resumes mid-epoch.
        super().on_train_start(trainer, *args)
        self.train_progress_bar.total = trainer.max_steps
        self.train_progress_bar.set_description("Steps")
        self._show_step(trainer)

    def on_train_epoch_start(self, trainer: Trainer, *args: Any) -> None:
        """Nothing: Lightning's resets the bar to the new epoch's batches, and this bar runs across epochs."""

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._show_step(trainer)
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def _show_step(self, trainer: Trainer) -> None:
        bar = self.train_progress_bar
        if not bar.disable and bar.n != trainer.global_step:
            bar.n = trainer.global_step
            bar.refresh()
