"""Guarding a run directory from the moment Hydra picks it until the run ends.

Hydra writes `.hydra/config.yaml` before the task starts, so a second run with the same
`run_name` would overwrite the record of the first before train() could refuse it. The Hydra
callback `RunDirectoryGuard` (registered in conf/hydra/default.yaml) acts before that write: it
takes the directory's lock, refuses a fresh run in a directory that holds a run, and moves the
earlier run's `.hydra/*.yaml` to `.hydra/config.1.yaml` (`.2`, ...), so every resume keeps the
configs it continued from. A resume refused for changed settings never trained with its configs,
so they go again and the kept ones are moved back: the directory only records settings it ran.
"""

from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lit_prefopt.checkpointing.config_check import ResumeConfigMismatch
from lit_prefopt.checkpointing.lock import RunDirectoryLocked, RunLock, is_global_rank_zero
from lit_prefopt.outputs.csv_logger import drop_rows_after_checkpoint
from lit_prefopt.outputs.training_started import training_started

log = logging.getLogger(__name__)

HYDRA_FILES = ("config", "hydra", "overrides")


class RunDirectoryGuard(Callback):
    """Lock the run directory for the run's life and keep its earlier configs (rank 0 only)."""

    def __init__(self) -> None:
        self.lock: RunLock | None = None
        self.kept: tuple[Path, int] | None = None  # the .hydra directory and the number its earlier configs got

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_global_rank_zero():
            return
        run_dir = Path(config.hydra.run.dir)
        self.lock = RunLock(run_dir)
        try:
            self.lock.acquire()
            atexit.register(self.lock.release)  # also after SystemExit, which skips on_run_end
            if config.get("ckpt_path") is None:
                claim_run_dir(run_dir, resume_requested=False)
            if config.hydra.output_subdir is not None:
                hydra_dir = run_dir / config.hydra.output_subdir
                number = keep_earlier_configs(hydra_dir)
                self.kept = (hydra_dir, number) if number is not None else None
        except (RunDirectoryLocked, FileExistsError) as error:
            self.lock.release()
            # Hydra turns a callback's exceptions into warnings and runs the job anyway: exit instead.
            raise SystemExit(f"Error: {error}") from error

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        refused = job_return.status == JobStatus.FAILED and isinstance(job_return._return_value, ResumeConfigMismatch)
        if refused and self.kept is not None:
            restore_earlier_configs(*self.kept)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.lock is not None:
            self.lock.release()


def claim_run_dir(run_dir: Path, resume_requested: bool) -> None:
    """A fresh run must not write into another run's directory: its metrics.csv would mix two
    runs and its old checkpoints would be what `ckpt_path=last` resumes. Refused, unless the
    user asked to resume (`ckpt_path=last` before any checkpoint was saved: that run's rows go)
    or the earlier run stopped before its first optimizer step (its rows go too), so a run that
    failed on a bad setting can be rerun in place once corrected."""
    leftovers = [name for name in ("metrics.csv", "checkpoints") if (run_dir / name).exists()]
    if not leftovers:
        return
    if not resume_requested and not training_started(run_dir):
        log.warning("%s holds a run that stopped before its first optimizer step: starting afresh there", run_dir)
    elif not resume_requested:
        raise FileExistsError(
            f"{run_dir} already holds a run ({', '.join(leftovers)}): resume it with ckpt_path=last, "
            "or choose another run_name (or remove the directory)"
        )
    drop_rows_after_checkpoint(run_dir / "metrics.csv", 0)


def keep_earlier_configs(hydra_dir: Path) -> int | None:
    """Move `config.yaml`, `hydra.yaml`, `overrides.yaml` to `<name>.<n>.yaml` with the first free n;
    return n (None when there was no config to keep)."""
    if not (hydra_dir / "config.yaml").exists():
        return None
    number = 1
    while any((hydra_dir / f"{name}.{number}.yaml").exists() for name in HYDRA_FILES):
        number += 1
    for name in HYDRA_FILES:
        if (hydra_dir / f"{name}.yaml").exists():
            (hydra_dir / f"{name}.yaml").rename(hydra_dir / f"{name}.{number}.yaml")
    log.info("The earlier configs of %s are kept as %s/config.%d.yaml", hydra_dir.parent, hydra_dir, number)
    return number


def restore_earlier_configs(hydra_dir: Path, number: int) -> None:
    """Undo `keep_earlier_configs`: `<name>.<number>.yaml` becomes `<name>.yaml` again, replacing
    the configs Hydra wrote for the run that was refused."""
    for name in HYDRA_FILES:
        kept = hydra_dir / f"{name}.{number}.yaml"
        if kept.exists():
            kept.replace(hydra_dir / f"{name}.yaml")
        else:
            (hydra_dir / f"{name}.yaml").unlink(missing_ok=True)
