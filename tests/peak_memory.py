"""A callback for measuring runs: the rise of the process's peak resident memory during fit.

Torch has no allocator statistics on CPU and tracemalloc does not see tensor storage, so the
kernel's own figures are read: VmRSS when the run sets up (before any model loads), VmHWM (the
peak) when training ends, after the peak is reset by writing 5 to /proc/self/clear_refs.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from benchmarks.resident_memory import reset_peak, status_bytes


class PeakResidentMemory(Callback):
    """Writes {"start": VmRSS at setup, "peak": VmHWM at the end of fit} to `path` as JSON."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.start = 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.start = reset_peak()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.path.write_text(json.dumps({"start": self.start, "peak": status_bytes("VmHWM")}))
