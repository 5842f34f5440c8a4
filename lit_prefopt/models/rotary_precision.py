"""Rotary angles in exact float32, whatever `trainer.float32_matmul_precision` allows elsewhere.

transformers' rotary embeddings (Llama's, which Qwen2, Mistral and many others reuse) compute the
angles, position x inverse frequency, as a float32 matmul with K = 1 (`inv_freq @ position_ids`)
in the releases before 5.24. Under `float32_matmul_precision=high`, which `trainer=gpu` sets for
TF32, a GPU may run that product as a TF32 GEMM (reported on B200). TF32 keeps 10 mantissa bits:
positions above 2048 round to a multiple of 2 or more and each frequency to about 3 significant
digits, so every rotary angle past the first few thousand tokens is wrong. Policy and reference
would be wrong alike, silently, and only on long rows (the GPU configs' rows reach 16k tokens).

Only the rotary module's forward runs at `highest`; every other float32 matmul keeps TF32. The
cost is two flag writes per model forward. Newer transformers multiply elementwise, for which
the guard changes nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_SAVED = "_lit_prefopt_matmul_precision"


def keep_rotary_angles_exact(model: nn.Module) -> None:
    """Run each rotary-embedding module of `model` at float32 matmul precision `highest` (idempotent)."""
    for module in model.modules():
        if type(module).__name__.endswith("RotaryEmbedding") and not hasattr(module, _SAVED):
            setattr(module, _SAVED, None)
            module.register_forward_pre_hook(_exact_float32)
            module.register_forward_hook(_restore_precision)


def _exact_float32(module: nn.Module, args: Any) -> None:
    setattr(module, _SAVED, torch.get_float32_matmul_precision())
    torch.set_float32_matmul_precision("highest")


def _restore_precision(module: nn.Module, args: Any, output: Any) -> None:
    torch.set_float32_matmul_precision(getattr(module, _SAVED))
