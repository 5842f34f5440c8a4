"""DDP and FSDP through the real CLI on 2 CPU processes (gloo), against one process.

Lightning's DDP launcher re-runs the command line for each rank, so these run
`python -m lit_prefopt` in a subprocess (DESIGN.md section 7).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from entry_process import run_lit_prefopt

COMMON = (
    "trainer.max_steps=4",
    "data.shuffle=false",
    "validate_before_training=false",
    "data.val_files=null",
    "scheduler=constant",
    "checkpoint.every_n_steps=2",
    "optimizer=sgd",  # linear in the gradient: Adam would amplify float noise in near-zero gradients
    "optimizer.lr=0.5",
)


def losses(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [float(r["train/loss"]) for r in csv.DictReader(file) if r.get("train/loss")]


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("single")
    run_lit_prefopt("run_name=single", "data.batch_size=4", *COMMON, cwd=cwd)
    return cwd / "outputs" / "single"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_process(strategy: str, single_process_run: Path, tmp_path: Path) -> None:
    """2 ranks x 2 pairs give the same per-step losses as 1 process x 4 pairs."""
    run_lit_prefopt(f"run_name={strategy}", f"strategy={strategy}", "trainer.devices=2", "data.batch_size=2", *COMMON,
                    cwd=tmp_path)
    run_dir = tmp_path / "outputs" / strategy
    assert losses(run_dir) == pytest.approx(losses(single_process_run), abs=1e-5)

    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(run_dir / "hf").state_dict()
    expected = AutoModelForCausalLM.from_pretrained(single_process_run / "hf").state_dict()
    for name, tensor in expected.items():
        torch.testing.assert_close(exported[name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_dir() if strategy == "fsdp" else last.is_file()


@pytest.mark.slow
def test_fsdp_checkpoint_resumes_under_fsdp(tmp_path: Path) -> None:
    overrides = ("run_name=resume", "strategy=fsdp", "trainer.devices=2", "data.batch_size=2", *COMMON)
    run_lit_prefopt(*overrides, cwd=tmp_path)
    run_lit_prefopt(*[o.replace("max_steps=4", "max_steps=6") for o in overrides], "ckpt_path=last", cwd=tmp_path)
    assert len(losses(tmp_path / "outputs" / "resume")) == 6
