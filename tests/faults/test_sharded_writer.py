"""A sharded checkpoint whose background write fails never becomes `step=N.ckpt` or `last`."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch.distributed.checkpoint import FileSystemWriter

from lit_prefopt.checkpointing.files import CheckpointWriteError
from lit_prefopt.checkpointing.last import point_last_at
from lit_prefopt.checkpointing.resume import resolve_ckpt_path
from lit_prefopt.checkpointing.sharded import ShardedCheckpointWriter


def save(writer: ShardedCheckpointWriter, strategy: SingleDeviceStrategy, target: Path, step: int) -> None:
    writer.save(strategy, {"state_dict": {"w": torch.full((4,), float(step))}}, {"global_step": step}, target)
    writer.after_save(lambda: point_last_at(target))


def test_a_failed_background_write_leaves_last_at_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    checkpoints = tmp_path / "checkpoints"
    strategy = SingleDeviceStrategy(device=torch.device("cpu"))
    writer = ShardedCheckpointWriter(async_save=True)
    save(writer, strategy, checkpoints / "step=1.ckpt", 1)
    writer.wait(strategy)
    assert os.readlink(checkpoints / "last.ckpt") == "step=1.ckpt"

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(FileSystemWriter, "write_data", disk_full)
    save(writer, strategy, checkpoints / "step=2.ckpt", 2)
    assert (checkpoints / "step=2.ckpt.saving").is_dir(), "written in the background, not yet in place"
    assert os.readlink(checkpoints / "last.ckpt") == "step=1.ckpt", "last waits for the write"
    # The run stops on the failed write, at the next save or at its end.
    with pytest.raises(CheckpointWriteError, match=r"step=2\.ckpt in the background .*No space left on device"):
        writer.wait(strategy)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "step=1.ckpt"]
    assert resolve_ckpt_path("last", tmp_path) == str(checkpoints / "step=1.ckpt")
