"""A crash in the middle of writing a checkpoint never leaves an unloadable `last.ckpt`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fsspec.implementations.local import LocalFileOpener

from lit_prefopt.strategies import replace_directory
from lit_prefopt.train import resolve_ckpt_path, train


def test_crash_while_writing_last_ckpt_keeps_the_previous_one(compose, monkeypatch) -> None:
    """Train 2 steps (last.ckpt saved), then crash halfway through the bytes of the next save."""
    cfg = compose("trainer.max_steps=2", "data.batch_size=2", "validate_before_training=false", "data.val_files=null",
                  "export_hf=false", "checkpoint.every_n_steps=100")
    train(cfg)
    last = Path(cfg.run_dir) / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    real_write = LocalFileOpener.write

    def write_half_then_crash(self, data):
        if not str(self.path).endswith(".ckpt"):
            return real_write(self, data)
        real_write(self, data[: len(data) // 2])
        raise OSError("disk full (injected)")

    monkeypatch.setattr(LocalFileOpener, "write", write_half_then_crash)
    resumed = compose("trainer.max_steps=4", "data.batch_size=2", "validate_before_training=false",
                      "data.val_files=null", "export_hf=false", "checkpoint.every_n_steps=100", "ckpt_path=last")
    with pytest.raises(OSError, match="injected"):
        train(resumed)
    monkeypatch.undo()
    assert last.read_bytes() == before, "last.ckpt is the previous complete checkpoint"
    assert torch.load(last, weights_only=True)["global_step"] == 2


def test_sharded_save_interrupted_between_renames_resumes_from_the_previous(tmp_path: Path) -> None:
    """FSDP checkpoints are directories: staged, then renamed; the old one survives as .old."""
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
