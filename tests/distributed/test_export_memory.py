"""Rank 0's memory during an FSDP export of a 374M-parameter Llama (random weights from a config).

The export streams tensor by tensor, so the rise of rank 0's peak resident memory (VmHWM, reset
through /proc/self/clear_refs just before) stays within 1.2x the model's size in the export
dtype; gathering a float32 state dict and loading it into a second model took about 4x.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from benchmarks.resident_memory import reset_peak, status_bytes
from tests.gloo import gloo_group, rendezvous, spawn_ranks

# A Llama shape of 374M parameters: 24 layers of width 1024, a 32k vocabulary, untied head.
SHAPE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
             intermediate_size=2816, vocab_size=32000, tie_word_embeddings=False)


def worker(rank: int, rendezvous_file: str, target: str, out: str) -> None:
    with gloo_group(rank, rendezvous_file):
        from torch.distributed.device_mesh import init_device_mesh
        from transformers import LlamaConfig, LlamaForCausalLM

        from lit_prefopt.models.export import save_policy
        from lit_prefopt.models.sharding import shard

        mesh = init_device_mesh("cpu", (2,))
        with torch.device("meta"):
            model = LlamaForCausalLM(LlamaConfig(**SHAPE))
        shard(model, mesh)
        model.to_empty(device="cpu")
        generator = torch.Generator().manual_seed(rank)
        with torch.no_grad():
            for param in model.parameters():
                param.to_local().normal_(0.0, 0.02, generator=generator)
        parameters = sum(p.numel() for p in model.parameters())
        dist.barrier()
        before = reset_peak()
        save_policy(model, Path(target), torch.bfloat16, is_global_zero=rank == 0)
        rise = status_bytes("VmHWM") - before
        if rank == 0:
            torch.save({"rise_bytes": rise, "parameters": parameters}, out)


@pytest.mark.slow
def test_export_peak_memory_rise_stays_near_the_model_size(tmp_path: Path) -> None:
    target, out = tmp_path / "hf", tmp_path / "memory.pt"
    spawn_ranks(worker, (rendezvous(tmp_path), str(target), str(out)))
    result = torch.load(out, weights_only=True)
    model_bytes = 2 * result["parameters"]  # bfloat16
    assert result["parameters"] >= 300e6
    print(f"export of {result['parameters'] / 1e6:.0f}M parameters ({model_bytes / 2**20:.0f} MiB in bf16): "
          f"rank 0 peak RSS rise {result['rise_bytes'] / 2**20:.0f} MiB = {result['rise_bytes'] / model_bytes:.2f}x")
    assert result["rise_bytes"] <= 1.2 * model_bytes
    written = sum(p.stat().st_size for p in target.glob("*.safetensors"))
    with open(target / "model.safetensors", "rb") as stream:
        header_bytes = 8 + struct.unpack("<Q", stream.read(8))[0]
    assert written == header_bytes + model_bytes
    assert json.loads((target / "config.json").read_text())["dtype"] == "bfloat16"
