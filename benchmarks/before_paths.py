"""The scale path as it was before the scale work, rebuilt for the scale benchmark's "before" run.

Three old behaviours are no longer reachable by settings, on purpose (each was a bug at scale),
so the benchmark reconstructs them here from the code they replaced, and says so in its results:

- precision: `trainer.precision=bf16-mixed` under `strategy=fsdp` used Lightning's autocast over
  FSDP2's default policy (float32 all-gathers, autocast-held bf16 copies of the weights);
- loading: rank 0 read the whole checkpoint and broadcast every full tensor
  (`set_model_state_dict(..., broadcast_from_rank0=True)`);
- export: the float32 state dict gathered on rank 0 and loaded into a second model built with
  `from_config`, then `save_pretrained`.

The old float32 reference, activation checkpointing off and a float32 export dtype remain settings
(`model.reference_dtype=float32`, `model.gradient_checkpointing=false`, `export_dtype=float32`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import ModelParallelStrategy
from safetensors.torch import load_file
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
from transformers import AutoModelForCausalLM

import lit_prefopt.models.sharding as sharding
from lit_prefopt.strategies import FullyShardedStrategy


class AutocastFullyShardedStrategy(FullyShardedStrategy):
    """FSDP2 keeping Lightning's bf16 autocast plugin, so the sharding uses the default float32 policy."""

    @property
    def precision_plugin(self) -> Precision:
        return ModelParallelStrategy.precision_plugin.fget(self)

    @precision_plugin.setter
    def precision_plugin(self, plugin: Precision | None) -> None:
        self._precision_plugin = plugin


def broadcast_read(model: nn.Module, directory: str | Path) -> None:
    """The old load: rank 0 reads every tensor of the checkpoint, then each is broadcast in full."""
    directory = Path(directory)
    full: dict[str, torch.Tensor] = {}
    if torch.distributed.get_rank() == 0:
        index = directory / "model.safetensors.index.json"
        files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else [
            "model.safetensors"]
        for name in files:
            full.update(load_file(directory / name))
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True,
                                                                  strict=False))


@contextmanager
def broadcast_loading() -> Iterator[None]:
    """Sharded models load through `broadcast_read` instead of each rank reading its own slices."""
    owned = sharding.read_owned_slices
    sharding.read_owned_slices = broadcast_read
    try:
        yield
    finally:
        sharding.read_owned_slices = owned


def gather_and_rebuild_export(policy: nn.Module, target: Path, is_global_zero: bool) -> None:
    """The old `hf/` export: full state dict on rank 0, a second model from the config, save_pretrained.

    The gather is collective: every rank calls it; with `cpu_offload` only rank 0 receives the tensors.
    """
    weights = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not is_global_zero:
        return
    model = AutoModelForCausalLM.from_config(policy.config, dtype=policy.dtype)
    model.load_state_dict(weights)
    model.save_pretrained(target, safe_serialization=True)
