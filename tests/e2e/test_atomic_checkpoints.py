"""A crash in the middle of writing a checkpoint never leaves an unloadable `last.ckpt`."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from lit_prefopt.checkpointing import files
from lit_prefopt.checkpointing.files import CheckpointWriteError, replace_directory
from lit_prefopt.train import resolve_ckpt_path, train


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(compose, monkeypatch) -> None:
    """Train 2 steps (step=2.ckpt saved, last.ckpt pointing at it), then run out of space halfway through the bytes of the next save."""
    cfg = compose("trainer.max_steps=2", "data.batch_size=2", "validate_before_training=false", "data.val_files=null",
                  "export_hf=false", "checkpoint.every_n_steps=100", "scheduler=constant")
    train(cfg)
    checkpoints = Path(cfg.run_dir) / "checkpoints"
    before = (checkpoints / "last.ckpt").read_bytes()

    def write_half_then_fill_the_disk(checkpoint, file) -> None:
        file.write(b"\0" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "torch_save", write_half_then_fill_the_disk)
    resumed = compose("trainer.max_steps=4", "data.batch_size=2", "validate_before_training=false",
                      "data.val_files=null", "export_hf=false", "checkpoint.every_n_steps=3", "scheduler=constant",
                      "ckpt_path=last")
    with pytest.raises(CheckpointWriteError, match=r"step=3\.ckpt: the disk is full"):
        train(resumed)
    monkeypatch.undo()
    listing = sorted(p.name for p in checkpoints.iterdir())
    assert listing == ["last.ckpt", "step=2.ckpt"], "no partial or temporary file is left"
    assert os.readlink(checkpoints / "last.ckpt") == "step=2.ckpt", "last.ckpt points at the previous complete save"
    assert (checkpoints / "last.ckpt").read_bytes() == before
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 2


def test_sharded_save_interrupted_between_renames_resumes_from_the_previous(tmp_path: Path) -> None:
    """A full sharded last.ckpt of an older run, replaced by a staged directory: the old one survives as .old."""
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "last.ckpt").mkdir(parents=True)
    (checkpoints / "last.ckpt" / "meta.pt").write_text("old")
    staging = checkpoints / "last.ckpt.saving"
    staging.mkdir()
    (staging / "meta.pt").write_text("new")
    # A crash right after the first rename: last.ckpt is gone, last.ckpt.old holds the previous.
    (checkpoints / "last.ckpt").rename(checkpoints / "last.ckpt.old")
    assert resolve_ckpt_path("last", tmp_path) == str(checkpoints / "last.ckpt.old")
    replace_directory(staging, checkpoints / "last.ckpt")
    assert (checkpoints / "last.ckpt" / "meta.pt").read_text() == "new"
    assert not staging.exists() and not (checkpoints / "last.ckpt.old").exists()
    assert resolve_ckpt_path("last", tmp_path) == str(checkpoints / "last.ckpt")
