"""A resumed run trains its first step at the learning rate its (possibly redefined) schedule gives.

The optimizer state in a checkpoint holds the learning rate the schedule set last, and a
step-wise scheduler only sets a new one after the next step. When the schedule's length changed
on resume (`trainer.max_steps` extended with `resume_allow_changes=true`), the first resumed step
ran at the old schedule's final rate (0 for a cosine to 0) and the rate then jumped to the new
curve. Recomputing the rate for the restored step when training starts makes the new schedule
hold from the first resumed step; without a change it recomputes the same value.
"""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from torch.optim.lr_scheduler import LambdaLR


class ScheduleAtRestoredStep(Callback):
    """Set each LambdaLR-scheduled group's rate for the scheduler's current step."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, LambdaLR):
                step = scheduler.last_epoch
                rates = [base * factor(step) for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
                for group, rate in zip(scheduler.optimizer.param_groups, rates):
                    group["lr"] = rate
                scheduler._last_lr = rates
