"""Resuming from an older step=N.ckpt keeps at most checkpoint.keep_last_n step files."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_prefopt.train import train

FAST = ("data.batch_size=2", "validate_before_training=false", "data.val_files=null", "export_hf=false",
        "scheduler=constant", "checkpoint.every_n_steps=1", "checkpoint.keep_last_n=2")


@pytest.mark.slow
def test_resume_from_an_older_step_file_keeps_keep_last_n_files(compose) -> None:
    cfg = compose("trainer.max_steps=4", *FAST)
    train(cfg)
    checkpoints = Path(cfg.run_dir) / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("step=*")) == ["step=3.ckpt", "step=4.ckpt"]

    train(compose("trainer.max_steps=5", *FAST, f"ckpt_path='{checkpoints / 'step=3.ckpt'}'"))
    # Steps 4 and 5 of the resumed run (step=4 overwritten, not a step=4-v1.ckpt beside it); step=3 rotated out.
    assert sorted(p.name for p in checkpoints.glob("step=*")) == ["step=4.ckpt", "step=5.ckpt"]


def test_a_checkpoint_step_at_the_end_of_an_epoch_is_saved(compose) -> None:
    """Lightning's ModelCheckpoint with a monitor defers a save on an epoch's last batch to a validation it
    expects at the epoch end; validation here runs every val_check_interval steps, so that save never came."""
    cfg = compose("experiment=debug", "data.batch_size=128", "trainer.max_steps=6", "checkpoint.every_n_steps=1",
                  "checkpoint.keep_last_n=-1", "trainer.val_check_interval=100", "validate_before_training=false",
                  "export_hf=false", "scheduler=constant")  # 4 batches an epoch of the 512 sample pairs
    train(cfg)
    steps = sorted(int(p.name[5:-5]) for p in (Path(cfg.run_dir) / "checkpoints").glob("step=*.ckpt"))
    assert steps == [1, 2, 3, 4, 5, 6]
