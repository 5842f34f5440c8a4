"""The trained policy as a plain `transformers` checkpoint directory (`save_pretrained` format).

Used for a run's `hf/` export and by `PreferenceModule.save_pretrained`: the policy is gathered
first when sharded (FSDP; every rank takes part, rank 0 writes) and LoRA adapters are merged, so
the directory loads with `AutoModelForCausalLM.from_pretrained` and needs neither lit_prefopt nor
peft.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM

from lit_prefopt.models.lora import has_adapters, merge_adapters
from lit_prefopt.models.sharding import full_state_dict


def export_hf(module: Any, tokenizer: Any, target: Path, is_global_zero: bool) -> None:
    """Write the module's policy (merged, gathered) and `tokenizer` to `target` on rank 0."""
    policy = module.policy
    if module.device_mesh is not None:
        weights = full_state_dict(policy)
        if not is_global_zero:
            return
        policy = AutoModelForCausalLM.from_config(policy.config, dtype=policy.dtype)
        policy.load_state_dict(weights)
    if has_adapters(policy):
        policy = merge_adapters(policy)
    if is_global_zero:
        policy.save_pretrained(target, safe_serialization=True)
        tokenizer.save_pretrained(target)
