"""Checks of the optimizer, scheduler, trainer and sweep settings, run before anything is loaded.

torch and Lightning would reject most of these values themselves, but only once the optimizer
is built: after the model has loaded and the baseline validation has run, minutes into a run
on a real model. Each check names the config key and the value it got.
"""

from __future__ import annotations

import math
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

# Trainer arguments that train() builds from the config groups of the same names.
GROUP_BUILT_TRAINER_ARGUMENTS = ("strategy", "logger", "callbacks")


def check_config(cfg: DictConfig) -> None:
    """Raise ValueError naming the first key whose value cannot train."""
    check_trainer(cfg.trainer)
    check_optimizer(cfg.optimizer)
    if cfg.get("scheduler"):
        check_scheduler(cfg.scheduler, cfg.trainer.max_steps)
    check_sweep(cfg)


def check_trainer(trainer: DictConfig) -> None:
    """Training is counted in optimizer steps (the data streams), so it needs at least one."""
    max_steps = trainer.get("max_steps")
    if not _is_int(max_steps) or max_steps < 1:
        raise ValueError(
            f"trainer.max_steps must be a whole number of optimizer steps >= 1, got {max_steps!r} "
            "(0 would export the untrained starting model, -1 would never stop: the data streams)"
        )
    for name in GROUP_BUILT_TRAINER_ARGUMENTS:
        if trainer.get(name) is not None:
            raise ValueError(f"trainer.{name} is built from the `{name}` config group: set {name}=<option> instead")


def check_optimizer(optimizer: DictConfig) -> None:
    """The settings AdamW and SGD share, wherever the chosen optimizer has them."""
    _check_number(optimizer, "optimizer", "lr", low=0.0, low_inclusive=False)
    _check_number(optimizer, "optimizer", "weight_decay", low=0.0)
    _check_number(optimizer, "optimizer", "eps", low=0.0, low_inclusive=False)
    _check_number(optimizer, "optimizer", "momentum", low=0.0)
    betas = optimizer.get("betas")
    if betas is not None:
        if len(betas) != 2 or not all(_is_number(b) and 0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"optimizer.betas must be two numbers in [0, 1), got {list(betas)!r}")


def check_scheduler(scheduler: DictConfig, max_steps: int) -> None:
    """Warm-up must end within the schedule, and a decay must end at a fraction of the lr."""
    total = scheduler.get("total_steps", max_steps)
    total_key = "trainer.max_steps" if total == max_steps else "scheduler.total_steps"
    if not _is_int(total) or total < 1:
        raise ValueError(f"{total_key} must be a whole number >= 1, got {total!r}")
    warmup = scheduler.get("warmup_steps", 0)
    if not _is_int(warmup) or warmup < 0:
        raise ValueError(f"scheduler.warmup_steps must be a whole number >= 0, got {warmup!r}")
    if warmup >= total:
        raise ValueError(
            f"scheduler.warmup_steps={warmup} is not below {total_key}={total}: the whole run would be warm-up"
        )
    _check_number(scheduler, "scheduler", "final_lr_scale", low=0.0, high=1.0)


def check_sweep(cfg: DictConfig) -> None:
    """A sweeper that optimizes train()'s return value needs that metric to exist: a `val/`
    metric is only there when validation files are."""
    if not HydraConfig.initialized():
        return
    sweeper = HydraConfig.get().sweeper
    optimizes = sweeper.get("direction") is not None
    if optimizes and str(cfg.optimized_metric).startswith("val/") and not cfg.data.get("val_files"):
        raise ValueError(
            f"this sweep optimizes optimized_metric={cfg.optimized_metric}, but data.val_files is empty: "
            "give validation files (data.val_files=[...]) or a train/ metric as optimized_metric"
        )


def _check_number(
    node: DictConfig, group: str, key: str, low: float, high: float = math.inf, low_inclusive: bool = True
) -> None:
    if key not in node:
        return
    value = node[key]
    above = _is_number(value) and (value >= low if low_inclusive else value > low)
    if not (above and value <= high and math.isfinite(value)):
        bound = f"{'>=' if low_inclusive else '>'} {low:g}" + (f" and <= {high:g}" if high != math.inf else "")
        raise ValueError(f"{group}.{key} must be a number {bound}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
