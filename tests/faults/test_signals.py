"""SIGTERM and SIGINT: a checkpoint at the step boundary, the resume command, and a non-zero exit."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.entry_process import entry_env, run_lit_prefopt

OVERRIDES = ("run_name=stopped", "trainer.max_steps=400", "data.batch_size=2", "scheduler=constant",
             "data.val_files=null", "checkpoint.every_n_steps=1000")


def logged_steps(metrics: Path) -> list[int]:
    if not metrics.exists():
        return []
    with open(metrics, newline="") as file:
        return [int(r["step"]) for r in csv.DictReader(file) if r.get("train/loss")]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_prints_the_resume_command_and_exits_non_zero(
    signum: int, exit_code: int, tmp_path: Path
) -> None:
    run_dir = tmp_path / "outputs" / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "lit_prefopt", *OVERRIDES], cwd=tmp_path, env=entry_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while len(logged_steps(run_dir / "metrics.csv")) < 2:
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        time.sleep(0.05)
    os.kill(process.pid, signum)
    output, _ = process.communicate(timeout=300)

    assert process.returncode == exit_code, output[-3000:]
    assert not (run_dir / "hf").exists(), "a stopped run is not exported as if it had finished"
    step = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 2 <= step < 400
    assert logged_steps(run_dir / "metrics.csv") == list(range(step)), "the checkpoint holds every logged step"
    assert f"Stopped by {signal.Signals(signum).name}" in output
    command = output.split("Resume with:\n")[1].splitlines()[0].strip()
    assert command.endswith("run_name=stopped ckpt_path=last"), command
    assert not (run_dir / ".lock").exists()

    if signum == signal.SIGINT:
        return  # one resume proves the command: SIGTERM's
    resume = [arg for arg in command.split()[3:] if not arg.startswith("trainer.max_steps")]
    run_lit_prefopt(*resume, f"trainer.max_steps={step + 1}", cwd=tmp_path)
    assert logged_steps(run_dir / "metrics.csv") == list(range(step + 1))
    assert "max_steps: 400" in (run_dir / ".hydra" / "config.1.yaml").read_text(), "the first config is kept"
    assert f"max_steps: {step + 1}" in (run_dir / ".hydra" / "config.yaml").read_text()
