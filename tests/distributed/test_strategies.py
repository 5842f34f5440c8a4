"""DDP and FSDP through the real CLI on 2 CPU processes (gloo), against one process.

Lightning's DDP launcher re-runs the command line for each rank, so these run
`python -m lit_prefopt` in a subprocess (docs/ARCHITECTURE.md#distribution-and-how-it-is-tested).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.entry_process import run_lit_prefopt

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


# The single-process baseline runs the plain log-prob path (padded rows, full logits); the 2-process
# runs use the default kernels (shared prompt, chunked head), and KERNELS a chunk smaller than a batch.
PLAIN = ("data.share_prompt=false", "model.chunked_logprobs=0")
KERNELS = ("model.chunked_logprobs=16",)
PACKED = ("data.pack=true",)  # a rank's 2 pairs in one row


CRITERIA = {
    "dpo": ("criterion=dpo",),
    # BCO's running reward mean is all-reduced: 2 ranks must keep the 1-process mean.
    "bco_pair": ("criterion=bco_pair",),
    # TR-DPO moves the reference every 2 steps on every rank (or shard) independently.
    "tr_dpo": ("criterion=tr_dpo", "callbacks.reference_sync.every_n_steps=2", "callbacks.reference_sync.mix=0.5"),
}


@pytest.fixture(scope="module")
def single_process_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One single-process run per criterion, made on first use."""
    runs: dict[str, Path] = {}

    def run(criterion: str) -> Path:
        if criterion not in runs:
            cwd = tmp_path_factory.mktemp(f"single_{criterion}")
            run_lit_prefopt("run_name=single", "data.batch_size=4", *COMMON, *CRITERIA[criterion], *PLAIN, cwd=cwd)
            runs[criterion] = cwd / "outputs" / "single"
        return runs[criterion]

    return run


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy,criterion,kernels",
    [("ddp", "dpo", PACKED), ("fsdp", "dpo", ()), ("fsdp", "dpo", (*KERNELS, *PACKED)), ("ddp", "bco_pair", ()),
     ("ddp", "tr_dpo", ()), ("fsdp", "tr_dpo", ())],
)
def test_two_processes_match_one_process(
    strategy: str, criterion: str, kernels: tuple[str, ...], single_process_runs, tmp_path: Path
) -> None:
    """2 ranks x 2 pairs give the same per-step losses and weights as 1 process x 4 pairs."""
    single = single_process_runs(criterion)
    run_lit_prefopt(f"run_name={strategy}", f"strategy={strategy}", "trainer.devices=2", "data.batch_size=2", *COMMON,
                    *CRITERIA[criterion], *kernels, cwd=tmp_path)
    run_dir = tmp_path / "outputs" / strategy
    assert losses(run_dir) == pytest.approx(losses(single), abs=1e-5)

    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(run_dir / "hf").state_dict()
    expected = AutoModelForCausalLM.from_pretrained(single / "hf").state_dict()
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
