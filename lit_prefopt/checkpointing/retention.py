"""`step=N.ckpt` files: the newest `checkpoint.keep_last_n` of them, and `last.ckpt` pointing at the newest.

Lightning's ModelCheckpoint never deletes the file a run resumed from, and writes `step=N-v1.ckpt`
beside a file of the same name: resuming from an older `step=N.ckpt` (whose continuation had
already written later step files) left more files than `keep_last_n`, forever. Here a resumed run
overwrites the step files it reaches again (the same steps of the same training; `metrics.csv` is
cut back to the checkpoint likewise) and rotates out the one it resumed from like any other.

`save_last` makes `last.ckpt` a pointer to the newest step file (lit_prefopt.checkpointing.last),
not a second full save, switched once that save has completed; a step file that `last` still
points at (the newest complete one while a newer save is written in the background) is removed
only after `last` has moved on. The end of training saves the final step once (unless it was
just saved) and points `last` at it. Only with `keep_last_n=0` (no step files) is `last.ckpt`
itself a full checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_prefopt.checkpointing.last import LAST_NAME, last_target, point_last_at


class RollingStepCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose top-k rotation also removes the checkpoint the run resumed from, and
    whose `last.ckpt` is a link to the newest complete step checkpoint."""

    def __init__(self, **kwargs: Any) -> None:
        # save_on_train_epoch_end: with a monitor, Lightning defers a step save that falls on an
        # epoch's last batch to the validation it expects at the epoch end; validation here runs
        # every val_check_interval steps (the data streams), so that save would never be made.
        super().__init__(enable_version_counter=False, save_on_train_epoch_end=True, **kwargs)
        self._removal_deferred: list[str] = []

    def save_now(self, trainer: Trainer) -> None:
        """Save the current step (unless it was just saved), point `last` at it, and wait until both are done."""
        if not self._should_skip_saving_checkpoint(trainer):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        wait_for_checkpoints(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.save_now(trainer)

    def _save_last_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Any]) -> None:
        if not self.save_last:
            return
        saved = self._last_checkpoint_saved
        if self.save_top_k == 0 or not saved or Path(saved).name == LAST_NAME:  # no step file to point at
            super()._save_last_checkpoint(trainer, monitor_candidates)
            return
        self.last_model_path = str(Path(saved).with_name(LAST_NAME))
        after_checkpoint_written(trainer, lambda: self._point_last_at(trainer, Path(saved)))

    def _point_last_at(self, trainer: Trainer, target: Path) -> None:
        if trainer.is_global_zero:
            point_last_at(target)
            for path in self._removal_deferred:
                if not _same(Path(path), target):
                    trainer.strategy.remove_checkpoint(path)
        self._removal_deferred = [path for path in self._removal_deferred if _same(Path(path), target)]
        trainer.strategy.barrier("last-checkpoint-linked")

    def _remove_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        """Keep the file `last` points at until `last` has moved on."""
        pointed = last_target(Path(filepath).parent) if trainer.is_global_zero else None
        if pointed is not None and _same(pointed, Path(filepath)):
            self._removal_deferred.append(filepath)
            return
        super()._remove_checkpoint(trainer, filepath)

    def _should_remove_checkpoint(self, trainer: Trainer, previous: str, current: str) -> bool:
        if previous == current or self.dirpath is None:
            return False
        return Path(self.dirpath).absolute() in Path(previous).absolute().parents


def after_checkpoint_written(trainer: Trainer, action: Any) -> None:
    """Run `action` once the checkpoint being written is complete (at once unless written in the background)."""
    writer = getattr(trainer.strategy, "checkpoint_writer", None)
    if writer is None:
        action()
    else:
        writer.after_save(action)


def wait_for_checkpoints(trainer: Trainer) -> None:
    """Collective: finish a background checkpoint write (and what waits on it, `last` included)."""
    writer = getattr(trainer.strategy, "checkpoint_writer", None)
    if writer is not None:
        writer.wait(trainer.strategy)


def save_checkpoint_now(trainer: Trainer, fallback: Path) -> None:
    """Save the current step through the run's RollingStepCheckpoint (step file, `last` pointed at
    it, retention), or as `fallback` when the run has none; return once it is complete."""
    callback = next((c for c in trainer.callbacks if isinstance(c, RollingStepCheckpoint)), None)
    if callback is None:
        trainer.save_checkpoint(fallback)
        wait_for_checkpoints(trainer)
    else:
        callback.save_now(trainer)


def _same(a: Path, b: Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)
