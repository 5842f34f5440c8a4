"""Checks of the optimizer, scheduler, trainer and sweep settings, run before anything is loaded.

torch and Lightning would reject most of these values themselves, but only once the optimizer
is built: after the model has loaded and the baseline validation has run, minutes into a run
on a real model. Each check names the config key and the value it got.
"""

from __future__ import annotations

import math

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lit_prefopt.config_values import is_int, is_number, require_number

# Trainer arguments that train() builds from the config groups of the same names.
GROUP_BUILT_TRAINER_ARGUMENTS = ("strategy", "logger", "callbacks")


def check_config(cfg: DictConfig) -> None:
    """Raise ValueError naming the first key whose value cannot train."""
    if cfg.get("seed") is not None and not is_int(cfg.seed):
        raise ValueError(f"seed must be a whole number, got {cfg.seed!r}")
    check_trainer(cfg.trainer)
    check_optimizer(cfg.optimizer)
    if cfg.get("scheduler"):
        check_scheduler(cfg.scheduler, cfg.trainer.max_steps)
    check_sweep(cfg)


def check_trainer(trainer: DictConfig) -> None:
    """Training is counted in optimizer steps (the data streams), so it needs at least one; the
    step settings Lightning would only trip over mid-run (a modulo by zero) are whole numbers >= 1."""
    max_steps = trainer.get("max_steps")
    if not is_int(max_steps) or max_steps < 1:
        raise ValueError(
            f"trainer.max_steps must be a whole number of optimizer steps >= 1, got {max_steps!r} "
            "(0 would export the untrained starting model, -1 would never stop: the data streams)"
        )
    for key in ("accumulate_grad_batches", "log_every_n_steps"):
        value = trainer.get(key)
        if value is not None and (not is_int(value) or value < 1):
            raise ValueError(f"trainer.{key} must be a whole number >= 1, got {value!r}")
    if trainer.get("gradient_clip_val") is not None:  # a negative norm bound would flip every gradient
        _check_number(trainer, "trainer", "gradient_clip_val", low=0.0)
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
        if len(betas) != 2 or not all(is_number(b) and 0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"optimizer.betas must be two numbers in [0, 1), got {list(betas)!r}")


def check_scheduler(scheduler: DictConfig, max_steps: int) -> None:
    """Warm-up must end within the schedule, a decay must end at a fraction of the lr, and no step
    may come after a decay to zero."""
    total = scheduler.get("total_steps", max_steps)
    total_key = "trainer.max_steps" if total == max_steps else "scheduler.total_steps"
    if not is_int(total) or total < 1:
        raise ValueError(f"{total_key} must be a whole number >= 1, got {total!r}")
    warmup = scheduler.get("warmup_steps", 0)
    if not is_int(warmup) or warmup < 0:
        raise ValueError(f"scheduler.warmup_steps must be a whole number >= 0, got {warmup!r}")
    if warmup >= total:
        raise ValueError(
            f"scheduler.warmup_steps={warmup} is not below {total_key}={total}: the whole run would be warm-up"
        )
    _check_number(scheduler, "scheduler", "final_lr_scale", low=0.0, high=1.0)
    if total < max_steps and scheduler.get("final_lr_scale", 1.0) == 0.0:
        raise ValueError(
            f"scheduler.total_steps={total} ends before trainer.max_steps={max_steps} and decays to "
            f"scheduler.final_lr_scale=0: steps {total} to {max_steps - 1} would run at learning rate 0 and train "
            "nothing; let the schedule end at max_steps, or give final_lr_scale > 0 to keep training at that rate"
        )


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
    if key in node:
        require_number(f"{group}.{key}", node[key], low, high, low_inclusive)
