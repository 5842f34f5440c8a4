"""Whether a run directory's earlier run got as far as an optimizer step.

A run that failed before its first step (a bad setting found late, a crash in the baseline
validation) leaves `metrics.csv` with validation rows only and no checkpoint: nothing was
trained, so rerunning with the same run_name may start afresh there instead of being refused.
"""

from __future__ import annotations

import csv
from pathlib import Path


def training_started(run_dir: Path) -> bool:
    """True once a checkpoint was saved or a train metric was logged in `run_dir`."""
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        return True
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        return False
    with open(metrics, newline="") as file:
        reader = csv.DictReader(file)
        train_columns = [name for name in reader.fieldnames or [] if name.startswith("train/")]
        return any(row.get(name) for row in reader for name in train_columns)
