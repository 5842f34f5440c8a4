"""Which dtypes a run computes in: bf16 under FSDP2 without autocast, the reference's dtype, TF32.

Under `strategy=fsdp`, `trainer.precision=bf16-mixed` does not use Lightning's autocast. Autocast
casts every float32 weight at each matmul and keeps the casts backward needs until backward: per
rank a whole bf16 copy of the decoder, undoing the sharding, while the all-gathers still move
float32. FSDP2's `MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)` instead all-gathers
the bf16 cast of the float32 shards (half the bytes), frees it layer by layer, and reduces
gradients in float32 into the float32 master shards the optimizer updates.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.plugins.precision import Precision
from torch.distributed.fsdp import MixedPrecisionPolicy

BF16_SHARDED = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


class ShardedMixedPrecision(Precision):
    """`bf16-mixed` under FSDP2: no autocast; the sharding's `mp_policy` casts (see the module doc)."""

    precision = "bf16-mixed"
    mp_policy = BF16_SHARDED


def mp_policy(plugin: Precision) -> MixedPrecisionPolicy:
    """The FSDP2 policy for a run's precision plugin (no casting unless bf16-mixed)."""
    return plugin.mp_policy if isinstance(plugin, ShardedMixedPrecision) else MixedPrecisionPolicy()


def compute_dtype(precision: str, model_dtype: str) -> str:
    """The dtype the policy's matmuls run in under `trainer.precision` with `model.dtype` weights.

    It is the default of `model.reference_dtype`: a reference that is never updated needs no
    float32 master copy, and stored in the policy's compute dtype it gives the policy's own
    log-probs at step 0 for half the memory and all-gather traffic.
    """
    if precision.startswith("bf16"):
        return "bfloat16"
    if precision.startswith("16"):
        return "float16"
    return model_dtype


def lightning_trainer(float32_matmul_precision: str = "highest", **arguments: Any) -> Trainer:
    """The `trainer` config's target: Lightning's Trainer, after `trainer.float32_matmul_precision`.

    `high` lets float32 matmuls use TF32 tensor cores on GPUs (`trainer=gpu`); `highest` is torch's
    default, exact float32. Every other key is a Trainer argument.
    """
    if float32_matmul_precision not in ("highest", "high", "medium"):
        raise ValueError(
            f"trainer.float32_matmul_precision must be highest, high or medium, got {float32_matmul_precision!r}"
        )
    torch.set_float32_matmul_precision(float32_matmul_precision)
    return Trainer(**arguments)
