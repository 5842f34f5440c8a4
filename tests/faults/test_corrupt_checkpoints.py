"""An unreadable last.ckpt falls back to the newest readable checkpoint; a corrupt given path is named."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from lit_prefopt.checkpointing.resume import UnreadableCheckpoint, resolve_ckpt_path
from lit_prefopt.train import train

FAST = ("data.batch_size=2", "validate_before_training=false", "data.val_files=null", "export_hf=false",
        "scheduler=constant", "checkpoint.every_n_steps=2", "checkpoint.keep_last_n=-1")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.slow
def test_truncated_checkpoints_are_skipped_by_last_and_named_when_given(compose, caplog) -> None:
    cfg = compose("trainer.max_steps=4", *FAST)
    train(cfg)
    checkpoints = Path(cfg.run_dir) / "checkpoints"
    truncate(checkpoints / "last.ckpt")
    truncate(checkpoints / "step=4.ckpt")

    with caplog.at_level(logging.WARNING):
        assert resolve_ckpt_path("last", Path(cfg.run_dir)) == str(checkpoints / "step=2.ckpt")
    assert "resuming from" in caplog.text and "step=2.ckpt" in caplog.text
    assert caplog.text.count("step=4.ckpt cannot be read") == 1, "last's target is one of the step files: named once"
    with pytest.raises(UnreadableCheckpoint, match=r"checkpoint .*step=4\.ckpt cannot be read"):
        resolve_ckpt_path(str(checkpoints / "step=4.ckpt"), Path(cfg.run_dir))

    train(compose("trainer.max_steps=3", *FAST, "ckpt_path=last"))  # resumes at step 2
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 3
