"""Run one benchmarked system in its own process and read back what it recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class ChildResult:
    """Exit status, wall time, peak resident memory and the step log of one child."""

    returncode: int
    wall_s: float
    peak_rss_mib: float
    log: dict | None
    stderr_tail: str


def run_child(args: list[str], log_path: Path, env: dict[str, str], timeout_s: float) -> ChildResult:
    """Run `python args...` from the repo root and read the `StepLog` it wrote to `log_path`.

    Peak RSS is the kernel's high-water mark of the child's resident set (`ru_maxrss`, read
    by the child as it exits), the same measure for both systems whatever they do inside.
    Both run with their data loading in the main process, so no worker's memory is missed.
    A child that exits with an error has no log, even if one was written before it failed.
    """
    log_path.unlink(missing_ok=True)
    stderr_path = log_path.with_suffix(".stderr")
    started = time.perf_counter()
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    wall = time.perf_counter() - started
    log = json.loads(log_path.read_text()) if process.returncode == 0 and log_path.exists() else None
    peak = log.get("max_rss_kib", float("nan")) / 1024 if log else float("nan")
    tail = stderr_path.read_text()[-3000:]
    return ChildResult(process.returncode, wall, peak, log, tail)


LAUNCHER_PREFIXES = ("SLURM_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK",
                     "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_")


def child_env(mmap_threshold: int | None) -> dict[str, str]:
    """The environment both systems run under: offline, quiet, and the same malloc settings.

    A launcher's process-group variables (a SLURM job's, torchrun's) are left out: each child is one
    single-machine run, and Lightning would otherwise read them as the cluster it belongs to.

    docs/ARCHITECTURE.md#cpu-performance-notes: with glibc's dynamic mmap threshold, big per-step allocations are
    mmapped and page-faulted afresh each step; a fixed high threshold keeps them in the heap.
    """
    inherited = {name: value for name, value in os.environ.items() if not name.startswith(LAUNCHER_PREFIXES)}
    env = {**inherited, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_OFFLINE": "1",
           # The repository first, then what the caller had (packages installed beside the image's).
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    return env
