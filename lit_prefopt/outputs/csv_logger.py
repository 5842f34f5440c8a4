"""`metrics.csv` in the run directory: one file per run, appended on resume.

Lightning's `CSVLogger` writes under `version_N/` and deletes an existing metrics file when the
directory is reused, which loses a resumed run's history. This logger writes `metrics.csv`
straight into the run directory, keeps what is there, and on resume drops the rows logged after
the checkpoint (the resumed run logs those steps again), so the file reads as one run.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])


class RunCSVLogger(CSVLogger):
    """A `CSVLogger` whose `metrics.csv` lives directly in `save_dir` and survives resumes.

    It appends every step by default (appending a row is cheap), so a run killed at any moment
    has its history on disk up to the checkpoint it will resume from.
    """

    def __init__(self, save_dir: str, flush_logs_every_n_steps: int = 1) -> None:
        super().__init__(save_dir=save_dir, name="", version="", flush_logs_every_n_steps=flush_logs_every_n_steps)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.log_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def log_hyperparams(self, params=None) -> None:  # the composed config lives in .hydra/
        return None


def drop_rows_after_checkpoint(metrics_file: Path, global_step: int) -> None:
    """Remove the rows a resume from a checkpoint at `global_step` will log again.

    Lightning logs the metrics of the (k+1)-th optimizer step at step k, and a validation run
    during fit after k+1 steps at step k too (the step counter moves after validation); the
    validation train() runs after fit is logged at the final step. A checkpoint taken after
    `global_step` steps precedes everything logged from step `global_step` on, so those rows go,
    whatever the validation interval.
    """
    if not metrics_file.is_file():
        return
    with open(metrics_file, newline="") as file:
        reader = csv.DictReader(file)
        fieldnames = reader.fieldnames or []
        kept = [row for row in reader if not row.get("step") or int(float(row["step"])) < global_step]
    with open(metrics_file, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(kept)
