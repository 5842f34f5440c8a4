"""Every process of a run writes into one run directory and resumes from one checkpoint.

Without `run_name` the run directory is dated (outputs/<date>/<time>) and each process that
starts on its own computes its own date: under torchrun or SLURM (`srun`) every rank does, and
with several nodes every node's first process does. Their directories differ whenever their
starts straddle a second boundary, and then so do `ckpt_path=last` and each rank's checkpoint
shards. Lightning's own launcher is safe on one node: it starts the other ranks of the node
itself and hands them its run directory (`hydra.run.dir`). Processes started independently
cannot learn rank 0's choice before Hydra has made theirs, so they must be given the directory
(`run_name`, or `hydra.run.dir`): `require_shared_run_dir` refuses to start otherwise.

Even with one directory, ranks resolve `ckpt_path` (`last`, or a `.old` fallback) by looking at
the filesystem, and on several nodes without a shared filesystem they see different things. Once
the process group exists, `RunAgreement` compares every rank's run directory and checkpoint with
rank 0's and stops all ranks alike with a message, rather than letting them train on different
weights or hang in a collective.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer


def independent_start(env: Mapping[str, str], num_nodes: int) -> str | None:
    """What started this process as one of several without rank 0's run dir, if anything did."""
    if "TORCHELASTIC_RUN_ID" in env and int(env.get("WORLD_SIZE", "1")) > 1:
        return f"torchrun started {env['WORLD_SIZE']} processes"
    if int(env.get("SLURM_NTASKS", "1")) > 1 and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return f"SLURM started {env['SLURM_NTASKS']} tasks"
    if num_nodes > 1:
        return f"trainer.num_nodes={num_nodes}: every node starts its own processes"
    return None


def require_shared_run_dir(run_name: str | None, run_dir_given: bool, num_nodes: int,
                           env: Mapping[str, str] = os.environ) -> None:
    """Refuse a dated run directory when each process would date its own."""
    start = independent_start(env, num_nodes)
    if run_name is None and not run_dir_given and start is not None:
        raise ValueError(
            f"run_name is required here ({start}): each process would otherwise pick its own dated run "
            "directory and checkpoint to resume. Add run_name=<name>, the same for every process "
            "(e.g. run_name=$SLURM_JOB_ID)."
        )


def hydra_run_dir_given() -> bool:
    """The run directory came from the command line (`hydra.run.dir=...`) or from a sweep's
    launcher (a multirun job's directory is decided by the process that launched the sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return True  # composed in code: the caller chose run_dir
    hydra = HydraConfig.get()
    return hydra.mode == RunMode.MULTIRUN or any(o.startswith("hydra.run.dir=") for o in hydra.overrides.hydra)


def check_agreement(run_dir: Path, ckpt_path: str | None) -> None:
    """Collective: every rank compares its run directory and checkpoint with every other's."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    mine = (str(run_dir.resolve()), ckpt_path)
    everyone: list[tuple[str, str | None]] = [mine] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    if any(choice != everyone[0] for choice in everyone):
        listing = "; ".join(f"rank {rank}: run_dir={d}, ckpt_path={c}" for rank, (d, c) in enumerate(everyone))
        raise RuntimeError(
            f"the ranks disagree on the run directory or the checkpoint to resume ({listing}). Put the "
            "outputs on a filesystem that every node shares, and give every process the same run_name."
        )


class RunAgreement(Callback):
    """Runs `check_agreement` once the process group exists, before any checkpoint is restored."""

    def __init__(self, run_dir: Path, ckpt_path: str | None) -> None:
        self.run_dir = run_dir
        self.ckpt_path = ckpt_path

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        check_agreement(self.run_dir, self.ckpt_path)
