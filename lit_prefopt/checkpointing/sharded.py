"""Sharded (FSDP) checkpoints: written by every rank into a staging directory, renamed when complete.

A distributed checkpoint is a directory of per-rank files plus metadata, so no single rename can
write it. Every rank writes under `<target>.saving`; once all have finished, rank 0 renames it to
`<target>` (`replace_directory`), and only then do the actions that depend on a complete save run
(switching `last.ckpt` to it, removing the checkpoints it replaces). A crash at any point leaves the
previous checkpoints and `last.ckpt` as they were.

With `checkpoint.async_save=true` the write runs in the background
(`torch.distributed.checkpoint.async_save`): the state is first copied to host memory, which is
all that training waits for, then written by a thread while training continues. The background
write communicates over its own gloo process group, so its collectives never interleave with the
training's. The staging directory is renamed, and `last.ckpt` switched, only when that write has
finished: the next save waits for it first, and so do the end of training and a stop on a signal
(`wait`). A run killed meanwhile resumes from the previous complete checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException

from lit_prefopt.checkpointing.files import (
    CheckpointWriteError,
    remove_checkpoint_path,
    replace_directory,
    staging_path,
)
from lit_prefopt.checkpointing.resume import SHARDED_METADATA


@dataclass
class _PendingSave:
    staging: Path
    target: Path
    future: Future | None
    then: list[Callable[[], None]] = field(default_factory=list)


class ShardedCheckpointWriter:
    """Writes one run's sharded checkpoints, synchronously or (`async_save`) in the background.

    `strategy` is the Lightning strategy: its ranks and barriers coordinate the ranks' writes.
    """

    def __init__(self, async_save: bool = False) -> None:
        self.async_save = async_save
        self._pending: _PendingSave | None = None
        self._group: dist.ProcessGroup | None = None

    def save(self, strategy: Any, tensors: dict[str, Any], metadata: dict[str, Any], target: Path) -> None:
        """Collective: write `tensors` (sharded) and `metadata` (rank 0's `meta.pt`) as `target`."""
        self.wait(strategy)  # one save at a time: the previous completes (and is renamed) first
        staging = staging_path(target)
        if strategy.global_rank == 0:
            remove_checkpoint_path(staging)  # left by a crashed save
            staging.mkdir(parents=True)
        strategy.barrier("checkpoint-staging")
        future = None
        if self.async_save:
            future = dcp.async_save(tensors, checkpoint_id=staging, process_group=self._background_group())
        else:
            dcp.save(tensors, checkpoint_id=staging)
        if strategy.global_rank == 0:
            torch.save(metadata, staging / SHARDED_METADATA)
        self._pending = _PendingSave(staging, target, future)
        if not self.async_save:
            self.wait(strategy)

    def after_save(self, action: Callable[[], None]) -> None:
        """Run `action` (on every rank) once the save in progress is complete; at once if none is."""
        if self._pending is None:
            action()
        else:
            self._pending.then.append(action)

    def wait(self, strategy: Any) -> None:
        """Collective: finish the save in progress, if any: its write, its rename, then its actions."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if pending.future is not None:
            try:
                pending.future.result()
            except (Exception, CheckpointException) as error:  # CheckpointException is a BaseException
                if strategy.global_rank == 0:
                    remove_checkpoint_path(pending.staging)  # `last` and the earlier checkpoints are untouched
                cause = (str(error).strip().splitlines() or [type(error).__name__])[-1]  # dcp adds each rank's traceback
                raise CheckpointWriteError(
                    f"could not write the checkpoint {pending.target} in the background ({cause}). The partial "
                    "checkpoint was removed and earlier checkpoints are intact; resume with ckpt_path=last"
                ) from error
        strategy.barrier("checkpoint-written")
        if strategy.global_rank == 0:
            replace_directory(pending.staging, pending.target)
        strategy.barrier("checkpoint-renamed")
        for action in pending.then:
            action()

    def _background_group(self) -> dist.ProcessGroup | None:
        if not dist.is_initialized():  # one process: nothing to coordinate
            return None
        if self._group is None:
            self._group = dist.new_group(backend="gloo")
        return self._group
