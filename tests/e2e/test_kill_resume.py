"""Kill -9 mid-run, resume with ckpt_path=last: same weights and same logged losses."""

from __future__ import annotations

import csv
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.entry_process import run_lit_prefopt, start_lit_prefopt

COMMON = (
    "trainer.max_steps=30",
    "checkpoint.every_n_steps=5",
    "checkpoint.keep_last_n=-1",
    "scheduler=constant",
    "data.batch_size=16",
    "validate_before_training=false",
    "data.val_files=null",
)


def train_losses(run_dir: Path) -> dict[int, float]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(file) if r.get("train/loss")}


def kill_after_checkpoint(cwd: Path, run_dir: Path, overrides: tuple[str, ...], checkpoint: str) -> None:
    """Start a run, SIGKILL its whole process group once `checkpoint` exists, before the end."""
    process = start_lit_prefopt(*overrides, cwd=cwd)
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoints" / checkpoint).exists():  # files and FSDP directories alike
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (run_dir / "hf").exists(), "the run finished before the kill: the test proves nothing"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["auto", "ddp", "fsdp"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(strategy: str, tmp_path: Path) -> None:
    ranks = (f"strategy={strategy}", "trainer.devices=2") if strategy != "auto" else ()
    overrides = (*COMMON, *ranks)
    run_lit_prefopt("run_name=straight", *overrides, cwd=tmp_path)
    kill_after_checkpoint(tmp_path, tmp_path / "outputs" / "killed", ("run_name=killed", *overrides), "step=10.ckpt")
    run_lit_prefopt("run_name=killed", "ckpt_path=last", *overrides, cwd=tmp_path)

    straight = load_file(tmp_path / "outputs" / "straight" / "hf" / "model.safetensors")
    resumed = load_file(tmp_path / "outputs" / "killed" / "hf" / "model.safetensors")
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, atol=1e-6, rtol=0, msg=name)
    expected = train_losses(tmp_path / "outputs" / "straight")
    assert len(expected) == 30
    assert train_losses(tmp_path / "outputs" / "killed") == pytest.approx(expected, abs=1e-6)
