"""checkpoint.async_save=true under FSDP (2 CPU processes, gloo): written in the background, `last`
switched once complete, and a resume from it continues exactly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.distributed.test_strategies import COMMON, losses
from tests.entry_process import run_lit_prefopt

OVERRIDES = ("run_name=async", "strategy=fsdp", "trainer.devices=2", "data.batch_size=2", "checkpoint.async_save=true",
             "checkpoint.keep_last_n=-1", *COMMON)


@pytest.mark.slow
def test_async_sharded_save_resumes_from_last_and_from_a_step(tmp_path: Path) -> None:
    run_lit_prefopt(*OVERRIDES, cwd=tmp_path)
    checkpoints = tmp_path / "outputs" / "async" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "step=2.ckpt", "step=4.ckpt"], "no staging left"
    assert os.readlink(checkpoints / "last.ckpt") == "step=4.ckpt"
    straight = losses(tmp_path / "outputs" / "async")

    # Step 2 was written in the background while steps 3 and 4 trained: it must hold step 2's state.
    run_lit_prefopt(*OVERRIDES, f"ckpt_path='{checkpoints / 'step=2.ckpt'}'", cwd=tmp_path)
    assert losses(tmp_path / "outputs" / "async") == pytest.approx(straight, abs=1e-6)

    run_lit_prefopt(*[o.replace("max_steps=4", "max_steps=6") for o in OVERRIDES], "ckpt_path=last", cwd=tmp_path)
    assert len(losses(tmp_path / "outputs" / "async")) == 6
    assert os.readlink(checkpoints / "last.ckpt") == "step=6.ckpt"


def test_async_save_of_a_single_file_checkpoint_is_refused_before_the_model_loads(compose) -> None:
    from lit_prefopt.train import train

    with pytest.raises(ValueError, match="checkpoint.async_save=true needs sharded checkpoints"):
        train(compose("checkpoint.async_save=true", "trainer.max_steps=1"))
