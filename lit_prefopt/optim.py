"""Optimizer parameter groups and learning-rate schedules, completed by the module.

Optimizer and scheduler configs are `_partial_: true` nodes; the module calls them with the
parameters it actually trains (`self.trainer.model`, so FSDP sees sharded parameters) and the
optimizer it built.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def parameter_groups(model: nn.Module) -> list[dict]:
    """Trainable parameters only; weight decay on matrices, none on norms and biases (nanoGPT)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if p.dim() >= 2]},
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, final_lr_scale: float = 0.0
) -> LambdaLR:
    """Linear warmup to the base lr, then cosine decay to `final_lr_scale` x base lr."""
    return LambdaLR(optimizer, lambda step: _cosine_factor(step, total_steps, warmup_steps, final_lr_scale))


def warmup_constant(optimizer: torch.optim.Optimizer, warmup_steps: int = 0) -> LambdaLR:
    """Linear warmup, then the base lr for the rest of the run."""
    return LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0)


def warmup_linear(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, final_lr_scale: float = 0.0
) -> LambdaLR:
    """Linear warmup, then linear decay to `final_lr_scale` x base lr at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 1.0 - (1.0 - final_lr_scale) * progress

    return LambdaLR(optimizer, factor)


def _cosine_factor(step: int, total_steps: int, warmup_steps: int, final_lr_scale: float) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_lr_scale + (1.0 - final_lr_scale) * 0.5 * (1.0 + math.cos(math.pi * progress))
