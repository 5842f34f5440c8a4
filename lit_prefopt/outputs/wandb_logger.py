"""W&B runs that line up with Hydra jobs: one run per job, grouped per multirun sweep.

`logger=wandb` builds its `WandbLogger` through `wandb_logger`, which fills what a sweep needs
and a config file cannot express: in a multirun every job gets the sweep directory as its W&B
group (so a sweep is one group on the dashboard, and the group names the directory holding its
files) and a run name made of its job number and overrides. `finish_wandb_run` closes the run
at the end of each job; without it Lightning would reuse the open run for the next job.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import WandbLogger

MAX_NAME_LENGTH = 128  # W&B truncates longer run and group names in its UI


def wandb_logger(
    *,
    project: str,
    name: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    tags: Sequence[str] = (),
    **kwargs: Any,
) -> WandbLogger:
    """A `WandbLogger`; in a Hydra multirun, `group` and `name` default to the sweep and the job."""
    sweep = _multirun_job()
    if sweep is not None:
        sweep_dir, job_name = sweep
        group = group or sweep_dir[-MAX_NAME_LENGTH:]
        name = name or job_name[:MAX_NAME_LENGTH]
    return WandbLogger(project=project, name=name, group=group, job_type=job_type, tags=list(tags), **kwargs)


def _multirun_job() -> tuple[str, str] | None:
    """(sweep directory, "<job number> <overrides>") for a job of a multirun, else None."""
    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        return None
    overrides = hydra.job.override_dirname
    return str(hydra.sweep.dir), f"{hydra.job.num} {overrides}".strip()


def finish_wandb_run() -> None:
    """Close the current W&B run, if any, so the next job of a multirun starts its own."""
    wandb = sys.modules.get("wandb")  # never import wandb just to find there is nothing to close
    if wandb is not None and wandb.run is not None:
        wandb.finish()
