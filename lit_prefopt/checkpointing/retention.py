"""`step=N.ckpt` files: the newest `checkpoint.keep_last_n` of them, whatever checkpoint the run resumed from.

Lightning's ModelCheckpoint never deletes the file a run resumed from, and writes `step=N-v1.ckpt`
beside a file of the same name: resuming from an older `step=N.ckpt` (whose continuation had
already written later step files) left more files than `keep_last_n`, forever. Here a resumed run
overwrites the step files it reaches again (the same steps of the same training; `metrics.csv` is
cut back to the checkpoint likewise) and rotates out the one it resumed from like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint


class RollingStepCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose top-k rotation also removes the checkpoint the run resumed from."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(enable_version_counter=False, **kwargs)

    def _should_remove_checkpoint(self, trainer: Any, previous: str, current: str) -> bool:
        if previous == current or self.dirpath is None:
            return False
        return Path(self.dirpath).absolute() in Path(previous).absolute().parents
