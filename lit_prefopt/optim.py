"""Optimizer parameter groups and learning-rate schedules, completed by the module.

Optimizer and scheduler configs are `_partial_: true` nodes; the module calls them with the
parameters it actually trains (`self.trainer.model`, so FSDP sees sharded parameters) and the
optimizer it built.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR


def parameter_groups(model: nn.Module) -> list[dict]:
    """Trainable parameters only; weight decay on matrices, none on norms and biases (nanoGPT)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if p.dim() >= 2]},
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]


def plain_hyperparameters(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Replace OmegaConf containers among the optimizer's hyperparameters by tuples and dicts.

    Hydra hands a YAML list (`betas: [0.9, 0.95]`) to the optimizer as a ListConfig. torch 2.11 and
    2.13 turn AdamW's betas into a tuple themselves; torch 2.9 keeps the ListConfig in
    `param_groups`, so it is pickled into every checkpoint, and `torch.load(weights_only=True)`
    (resume, the reference of an earlier run) refuses the file.
    """
    for group in optimizer.param_groups:
        for key, value in group.items():
            if isinstance(value, ListConfig):
                group[key] = tuple(OmegaConf.to_container(value, resolve=True))
            elif isinstance(value, DictConfig):
                group[key] = OmegaConf.to_container(value, resolve=True)
    return optimizer


# Weights sampled per tensor to estimate the share whose updates would round away.
_SAMPLE = 1 << 16
# A run where more than this share of the weights cannot move is refused.
_MAX_FROZEN_SHARE = 0.5


def check_updates_survive(
    optimizer: torch.optim.Optimizer, setting: str, sum_over_ranks: Callable[[Tensor], Tensor]
) -> None:
    """Refuse bf16/fp16 weights under an Adam-family optimizer whose steps would round away.

    Adam moves each weight by about `lr` per step whatever the gradient's size. A weight w in
    bfloat16 changes only if that step exceeds half its spacing, about |w| * 2^-9: at lr 5e-7 that
    is every weight above 2.6e-4, nearly all of a pretrained model, which then silently barely
    trains (about 1% of the weights move in 10 steps). `sum_over_ranks` makes every rank of a
    sharded model decide on the same counts.
    """
    low = [
        (param, float(group.get("initial_lr", group["lr"])))
        for group in optimizer.param_groups
        if "betas" in group  # Adam-like; other optimizers' steps follow the gradient's size
        for param in group["params"]
        if param.dtype in (torch.bfloat16, torch.float16)
    ]
    if not low:
        return
    counts = torch.zeros(2, dtype=torch.float64)
    for param, lr in low:
        local = (param.to_local() if hasattr(param, "to_local") else param).detach().flatten()
        counts += torch.tensor(_frozen_weights(local, lr), dtype=torch.float64)
    frozen, sampled = sum_over_ranks(counts.to(low[0][0].device)).tolist()
    if sampled and frozen / sampled > _MAX_FROZEN_SHARE:
        param, lr = low[0]
        raise ValueError(
            f"{setting} with optimizer.lr={lr:g}: {type(optimizer).__name__} steps of about lr per weight are below "
            f"half the {str(param.dtype).removeprefix('torch.')} spacing for {frozen / sampled:.0%} of the weights, so "
            "they round away and the model barely trains. Keep float32 weights (model.dtype=float32) with "
            "trainer.precision=bf16-mixed (bf16 compute over float32 master weights), or raise optimizer.lr."
        )


def _frozen_weights(weights: Tensor, lr: float) -> tuple[int, int]:
    """(how many of a strided sample of `weights` an update of size `lr` cannot change, sample size)."""
    sample = weights[:: max(1, weights.numel() // _SAMPLE)][:_SAMPLE]
    _, exponent = torch.frexp(sample.float())
    # |w| in [2^(e-1), 2^e) has spacing 2^(e-1) * eps; rounding to nearest drops steps below half of it.
    quarter_eps = torch.full_like(sample, torch.finfo(weights.dtype).eps / 4, dtype=torch.float32)
    half_spacing = torch.ldexp(quarter_eps, exponent)
    return int(((sample != 0) & (half_spacing > lr)).sum()), sample.numel()


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
