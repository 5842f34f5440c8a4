"""The command lines of the benchmarked runs: TRL's trainers and lit_prefopt's entry point.

Each run is one process; what varies between runs is only which system and which settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Workload:
    """What both systems are given: checkpoint, pairs, cap, pairs per step, lr, steps."""

    checkpoint: Path
    pairs: Path
    max_seq_len: int
    batch_size: int
    lr: float
    steps: int


@dataclass
class RunSpec:
    """One benchmarked run: a name for the table, the system and its settings."""

    name: str
    system: str  # "trl" or "lit_prefopt"
    criterion: str
    settings: dict = field(default_factory=dict)
    live_reference: bool = False


def trl_args(run: RunSpec, work: Workload, run_dir: Path, log_path: Path) -> list[str]:
    """`python -m benchmarks.trl_runner SPEC` with the spec written into `run_dir`."""
    spec = {
        "criterion": run.criterion,
        "model": str(work.checkpoint),
        "data": str(work.pairs),
        "output_dir": str(run_dir),
        "batch_size": work.batch_size,
        "max_seq_len": work.max_seq_len,
        "steps": work.steps,
        "lr": work.lr,
        "gradient_checkpointing": run.settings.get("gradient_checkpointing", True),
        **{key: run.settings[key] for key in ("bf16", "use_cpu") if key in run.settings},
        "result": str(log_path),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_path = run_dir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    return ["-m", "benchmarks.trl_runner", str(spec_path)]


def lit_args(run: RunSpec, work: Workload, run_dir: Path, log_path: Path, cache_dir: Path) -> list[str]:
    """`python -m lit_prefopt ...`: the user's command line plus a step timer callback.

    Same schedule as TRL's default (linear decay, no warm-up), no logger, no validation, no
    periodic checkpoints and no export, so only training steps are timed.
    """
    overrides = {
        "criterion": run.criterion,
        "model": "llama",
        "model.path": str(work.checkpoint),
        "data.train_files": f"[{work.pairs}]",
        "data.val_files": "null",
        "data.max_seq_len": work.max_seq_len,
        "data.batch_size": work.batch_size,
        "data.num_workers": 0,
        "trainer.max_steps": work.steps,
        "optimizer.lr": work.lr,
        "scheduler": "linear",
        "logger": "none",
        "validate_before_training": "false",
        "export_hf": "false",
        "cache_dir": str(cache_dir),
        "hydra.run.dir": str(run_dir),
        "+callbacks.step_timer._target_": "benchmarks.lightning_timer.StepTimer",
        "+callbacks.step_timer.path": str(log_path),
        **run.settings,
    }
    return ["-m", "lit_prefopt", "~callbacks.model_checkpoint", *(f"{k}={v}" for k, v in overrides.items() if v is not None)]
