"""FSDP2 for Hugging Face causal LMs: build on the meta device, shard per decoder layer, load.

Parameters never exist in full on any rank before sharding: the model is created on the meta
device, `fully_shard` is applied to each decoder layer and then the root, storage is allocated
for the local shards only, and each rank reads only its shards' slices of the checkpoint files. This
is what lets a model bigger than one device's memory start.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import get_model_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from lit_prefopt.models.sharded_read import read_owned_slices


def decoder_layers(model: PreTrainedModel) -> list[nn.Module]:
    """The repeated transformer blocks, found through the model's own `_no_split_modules`."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [module for module in model.modules() if type(module).__name__ in names]
    if not layers:
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__} to shard (no _no_split_modules)")
    return layers


def shard(model: nn.Module, mesh: DeviceMesh, mp_policy: MixedPrecisionPolicy | None = None) -> None:
    """`fully_shard` each decoder layer, then the root (embeddings, final norm, LM head)."""
    policy = mp_policy or MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)


def meta_model(config: PretrainedConfig, **from_config: Any) -> PreTrainedModel:
    """The model `config` describes, on the meta device (no storage), with its tied weights tied.

    transformers 5.0 leaves a model built on the meta device untied (later releases tie it in
    `from_config`): tied, a tied head is the embedding's one parameter, sharded and counted once.
    """
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, **from_config)
    model.tie_weights()
    return model


def load_sharded(
    directory: str,
    mesh: DeviceMesh,
    device: torch.device,
    dtype: torch.dtype,
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
    mp_policy: MixedPrecisionPolicy | None = None,
    like: nn.Module | None = None,
) -> PreTrainedModel:
    """A sharded model whose local shards hold `directory`'s weights in `dtype`, computing as
    `mp_policy` says (default: in `dtype`).

    `like`: a model already loaded from `directory` with the same sharding (the policy, when the
    reference is the same checkpoint): its local shards are copied instead of reading the files
    a second time. The caller passes it only while it still holds the files' values, in a dtype
    that holds them exactly (the same, or float32).
    """
    config = AutoConfig.from_pretrained(directory, trust_remote_code=trust_remote_code, local_files_only=True)
    model = meta_model(config, dtype=dtype, attn_implementation=attn_implementation, trust_remote_code=trust_remote_code)
    shard(model, mesh, mp_policy)
    model.to_empty(device=device)
    _restore_non_persistent_buffers(model, device)
    if like is None:
        read_owned_slices(model, directory)
    else:
        _copy_local_shards(like, model)
    return model


@torch.no_grad()
def _copy_local_shards(source: nn.Module, target: nn.Module) -> None:
    """Copy each local shard of `source` into `target`'s (same names, same placements), casting."""
    sources = get_model_state_dict(source)
    for name, tensor in get_model_state_dict(target).items():
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        given = sources[name]
        local.copy_(given.to_local() if hasattr(given, "to_local") else given)


def _restore_non_persistent_buffers(model: nn.Module, device: torch.device) -> None:
    """Recompute buffers that are not in checkpoints (rotary frequencies) after `to_empty`.

    They are derived from the config, so a fresh instance of their module computes them.
    """
    for module in model.modules():
        if not getattr(module, "_non_persistent_buffers_set", None) or not hasattr(module, "config"):
            continue
        with torch.device("cpu"):
            fresh = type(module)(config=module.config)
        for name in module._non_persistent_buffers_set:
            setattr(module, name, getattr(fresh, name).to(device))
