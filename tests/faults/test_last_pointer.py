"""`last.ckpt` points at the newest complete step checkpoint: never a second full save, never dangling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lit_prefopt.checkpointing import last, retention
from lit_prefopt.checkpointing.resume import resolve_ckpt_path
from lit_prefopt.train import train

FAST = ("data.batch_size=2", "validate_before_training=false", "data.val_files=null", "export_hf=false",
        "scheduler=constant")


@pytest.mark.slow
def test_last_links_the_newest_step_and_retention_keeps_what_it_points_at(compose, monkeypatch) -> None:
    """keep_last_n=1: each new step file replaces the previous one, which `last` still names until it moves."""
    switches: list[tuple[str | None, str]] = []

    def checked_switch(target: Path) -> None:
        before = last.last_target(target.parent)
        assert before is None or before.exists(), f"last pointed at a removed checkpoint {before}"
        switches.append((before and before.name, target.name))
        last.point_last_at(target)

    monkeypatch.setattr(retention, "point_last_at", checked_switch)
    cfg = compose("trainer.max_steps=3", *FAST, "checkpoint.every_n_steps=2", "checkpoint.keep_last_n=1")
    train(cfg)
    checkpoints = Path(cfg.run_dir) / "checkpoints"
    # Step 2 by the schedule, step 3 at the end of training: once each, no full copy as last.ckpt.
    assert switches == [(None, "step=2.ckpt"), ("step=2.ckpt", "step=3.ckpt")]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "step=3.ckpt"]
    assert os.readlink(checkpoints / "last.ckpt") == "step=3.ckpt"
    assert resolve_ckpt_path("last", Path(cfg.run_dir)) == str(checkpoints / "step=3.ckpt")

    # Resume from the pointer: the final step 4 is saved once more, last moves to it.
    train(compose("trainer.max_steps=4", *FAST, "checkpoint.every_n_steps=2", "checkpoint.keep_last_n=1",
                  "ckpt_path=last"))
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "step=4.ckpt"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 4


def test_without_symbolic_links_a_text_pointer_names_the_checkpoint(tmp_path: Path, monkeypatch) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for step in (1, 2):
        torch.save({"global_step": step}, checkpoints / f"step={step}.ckpt")
    last.point_last_at(checkpoints / "step=1.ckpt")
    assert os.readlink(checkpoints / "last.ckpt") == "step=1.ckpt"

    def no_links(*args: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_links)
    last.point_last_at(checkpoints / "step=2.ckpt")
    assert not (checkpoints / "last.ckpt").is_symlink(), "a stale link would name step=1"
    assert (checkpoints / "last").read_text() == "step=2.ckpt"
    assert resolve_ckpt_path("last", tmp_path) == str(checkpoints / "step=2.ckpt")


def test_a_full_last_checkpoint_of_an_older_run_is_read_and_replaced_by_the_link(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    torch.save({"global_step": 5}, checkpoints / "last.ckpt")
    assert resolve_ckpt_path("last", tmp_path) == str(checkpoints / "last.ckpt")
    torch.save({"global_step": 6}, checkpoints / "step=6.ckpt")
    last.point_last_at(checkpoints / "step=6.ckpt")
    assert os.readlink(checkpoints / "last.ckpt") == "step=6.ckpt"
    assert resolve_ckpt_path("last", tmp_path) == str(checkpoints / "step=6.ckpt")
