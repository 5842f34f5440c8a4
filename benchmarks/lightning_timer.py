"""A Lightning callback that writes lit_prefopt's `StepLog`, added to a run as
`+callbacks.step_timer._target_=benchmarks.lightning_timer.StepTimer +callbacks.step_timer.path=FILE`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from benchmarks.step_log import StepLog
from lit_prefopt.data.batch import PreferenceBatch


class StepTimer(Callback):
    """Records each training batch's end with its real pairs and non-padding tokens."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.steps = StepLog()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: PreferenceBatch, batch_idx: int) -> None:
        self.steps.record(batch.num_real_pairs, batch.num_tokens())

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.steps.write(self.path)
