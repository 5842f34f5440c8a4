"""End to end through the user's command line: `python -m lit_prefopt trainer=gpu ...` in a child
process, with `strategy=auto` and with `strategy=fsdp trainer.devices=1`, then a `ckpt_path=last`
resume of the FSDP run, and each run's `hf/` export reloaded with transformers.

FSDP on one device still initializes a process group (NCCL on a GPU) and writes distributed
checkpoints, so the multi-GPU path's moving parts run on one GPU. What each run must show:

- it exits 0 and trains the steps asked for (`summary.json`);
- `checkpoints/last.ckpt` is a file (auto) or a distributed-checkpoint directory (fsdp);
- the process group used the expected backend (Lightning's banner on the child's stderr);
- its first logged DPO loss is log 2 (policy == reference before the first update);
- the resume continues where the first run stopped: one row per step, no step twice;
- `hf/` loads with `AutoModelForCausalLM.from_pretrained`, differs from the starting weights and
  gives finite logits.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.child import child_env, run_child

LOG2_TOLERANCE = 1e-2  # bf16-mixed log-probs of policy and reference may round apart


@dataclass(frozen=True)
class EndToEnd:
    """One child run: its name in the report, its run directory name, overrides and step count."""

    name: str
    run_name: str
    overrides: tuple[str, ...]
    steps: int
    resumes: bool = False

    @property
    def strategy(self) -> str:
        return next(o.split("=", 1)[1] for o in self.overrides if o.startswith("strategy="))


def end_to_end_runs(gpu: bool, steps: int) -> list[EndToEnd]:
    """auto, fsdp, and the fsdp run resumed from `last` for two more steps."""
    trainer = ("trainer=gpu", "trainer.devices=1") if gpu else ("trainer.devices=1",)
    return [
        EndToEnd("auto", "auto", (*trainer, "strategy=auto"), steps),
        EndToEnd("fsdp", "fsdp", (*trainer, "strategy=fsdp"), steps),
        # Two more steps than the run it resumes: the schedule is stretched over them on purpose.
        EndToEnd("fsdp_resume", "fsdp", (*trainer, "strategy=fsdp", "ckpt_path=last", "resume_allow_changes=true"),
                 steps + 2, resumes=True),
    ]


def run_end_to_end(root: Path, checkpoint: Path, pairs: Path, val_pairs: Path, gpu: bool, steps: int,
                   batch_size: int, timeout_s: float) -> dict:
    """Every run in order (the resume needs the fsdp run before it), each checked."""
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for run in end_to_end_runs(gpu, steps):
        log_path = root / f"{run.name}.steps.json"
        args = ["-m", "lit_prefopt", "model=llama", f"model.path={checkpoint}", f"data.train_files=[{pairs}]",
                f"data.val_files=[{val_pairs}]", f"data.batch_size={batch_size}", f"trainer.max_steps={run.steps}",
                "trainer.val_check_interval=2", "trainer.log_every_n_steps=1", "checkpoint.every_n_steps=2",
                "logger=csv", f"run_name={run.run_name}", f"hydra.run.dir={root / run.run_name}",
                f"cache_dir={root / 'cache'}", "+callbacks.step_timer._target_=benchmarks.lightning_timer.StepTimer",
                f"+callbacks.step_timer.path={log_path}", *run.overrides]
        child = run_child(args, log_path, child_env(None), timeout_s)
        result = {"name": run.name, "overrides": list(run.overrides), "returncode": child.returncode,
                  "wall_s": child.wall_s, "peak_cuda_gib": (child.log or {}).get("peak_cuda_gib")}
        if child.returncode == 0:
            try:
                result["checks"] = check_run(root / run.run_name, run, checkpoint, gpu, log_path.with_suffix(".stderr"))
            except Exception as error:  # a missing or malformed output fails this run, not the runs already checked
                result.update(checks={"outputs_readable": False}, error=f"{type(error).__name__}: {error}")
        else:
            result.update(checks={"exit_0": False}, error=child.stderr_tail)
        result["passed"] = all(value is not False for value in result["checks"].values())
        results.append(result)
        print(f"  e2e {run.name}: {'ok' if result['passed'] else 'FAILED'} {result['checks']}", flush=True)
    return {"runs": results, "passed": all(r["passed"] for r in results)}


def check_run(run_dir: Path, run: EndToEnd, start: Path, gpu: bool, stderr: Path) -> dict[str, bool | None]:
    """The run's outputs against what it must show (None: does not apply to this run)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    losses = train_losses(run_dir / "metrics.csv")
    last = run_dir / "checkpoints" / "last.ckpt"
    fsdp = run.strategy == "fsdp"
    return {
        "exit_0": True,
        "steps": summary["steps"] == run.steps,
        "last_checkpoint": last.is_dir() if fsdp else last.is_file(),
        "distributed_backend": distributed_backend(stderr) == ("nccl" if gpu else "gloo") if fsdp else None,
        "step0_loss_log2": abs(losses[0][1] - math.log(2)) <= LOG2_TOLERANCE if losses and not run.resumes else None,
        "one_row_per_step": [step for step, _ in losses] == list(range(run.steps)),
        "hf_reloads": hf_reloads(run_dir / "hf", start),
    }


def train_losses(metrics_csv: Path) -> list[tuple[int, float]]:
    """(step, train/loss) of every training row of the run's metrics.csv."""
    with open(metrics_csv, newline="") as file:
        return [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(file) if r.get("train/loss")]


def distributed_backend(stderr: Path) -> str | None:
    """The backend Lightning reported when it initialized the process group (its banner goes to
    the child's stderr)."""
    found = re.search(r"distributed_backend=(\w+)", stderr.read_text(errors="replace"))
    return found.group(1) if found else None


def hf_reloads(export: Path, start: Path) -> bool:
    """The export loads, has moved away from the starting weights, and gives finite logits."""
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(export)
    initial = AutoModelForCausalLM.from_pretrained(start).state_dict()
    moved = any(not torch.equal(tensor.float(), initial[name].float()) for name, tensor in trained.state_dict().items())
    with torch.no_grad():
        logits = trained(input_ids=torch.arange(1, 9)[None]).logits
    return moved and bool(torch.isfinite(logits).all())
