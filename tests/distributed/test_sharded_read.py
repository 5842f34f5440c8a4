"""Sharded loading reads only each rank's slices: tied embeddings, missing weights, rank 0's memory.

One pair of gloo processes runs every check (starting processes is most of the cost).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, LlamaConfig

from benchmarks.resident_memory import reset_peak, status_bytes
from tests.gloo import gloo_group, rendezvous, spawn_ranks

IDS = torch.tensor([[0, 5, 9, 33, 2, 7]])
# About 470M float32 parameters: a 1.9 GB checkpoint.
LARGE = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
             num_key_value_heads=8, vocab_size=32000, tie_word_embeddings=False)


def _no_second_read(*args, **kwargs) -> None:
    raise AssertionError("the reference read the files again instead of reusing the policy's read")


def _worker(rank: int, rendezvous_file: str, root: str) -> None:
    with gloo_group(rank, rendezvous_file):
        results: dict = {}
        from torch.distributed.device_mesh import init_device_mesh

        from lit_prefopt.models import sharding
        from lit_prefopt.models.sharded_read import read_owned_slices
        from lit_prefopt.models.sharding import load_sharded

        mesh, cpu = init_device_mesh("cpu", (2,)), torch.device("cpu")
        real_shard = sharding.shard

        def shard_checking_meta(model, mesh, mp_policy=None):  # no full copy may exist before sharding
            results.setdefault("meta_before_shard", []).append(all(p.is_meta for p in model.parameters()))
            real_shard(model, mesh, mp_policy)

        sharding.shard = shard_checking_meta
        tied = load_sharded(f"{root}/tied", mesh, cpu, torch.float32)
        sharding.shard = real_shard
        embed = dict(tied.named_parameters())["model.embed_tokens.weight"]
        results["embed_rows"] = (embed.to_local().shape[0], embed.shape[0])
        with torch.no_grad():
            results["tied_logits"] = tied(input_ids=IDS).logits
        # A reference of the same checkpoint copies the policy's shards: equal to its own read, no file read.
        direct = load_sharded(f"{root}/tied", mesh, cpu, torch.bfloat16)
        sharding.read_owned_slices = _no_second_read
        reused = load_sharded(f"{root}/tied", mesh, cpu, torch.bfloat16, like=tied)
        sharding.read_owned_slices = read_owned_slices
        results["reuse_equal"] = all(
            torch.equal(a.full_tensor(), b.full_tensor()) for a, b in zip(reused.parameters(), direct.parameters())
        ) and {p.dtype for p in reused.parameters()} == {torch.bfloat16}
        try:
            load_sharded(f"{root}/incomplete", mesh, cpu, torch.float32)
        except ValueError as error:
            results["incomplete"] = str(error)
        del tied
        start = reset_peak()
        large = load_sharded(f"{root}/large", mesh, cpu, torch.float32)
        results["load_rise"] = status_bytes("VmHWM") - start
        results["large_sum"] = sum(p.full_tensor().double().sum().item() for p in large.parameters())
    if rank == 0:
        torch.save(results, Path(root) / "results.pt")


def _large_checkpoint(directory: Path) -> int:
    """A Llama checkpoint of LARGE's shape with known values (parameter n is filled with n / 1000)."""
    config = LlamaConfig(**LARGE)
    config.save_pretrained(directory)
    with torch.device("meta"):
        shapes = {name: p.shape for name, p in AutoModelForCausalLM.from_config(config).named_parameters()}
    tensors = {name: torch.full(shape, n / 1000) for n, (name, shape) in enumerate(shapes.items())}
    save_file(tensors, directory / "model.safetensors")
    return sum(t.numel() * t.element_size() for t in tensors.values())


@pytest.mark.slow
def test_ranks_read_their_slices(tmp_path: Path) -> None:
    tied_config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, vocab_size=256, tie_word_embeddings=True)
    torch.manual_seed(0)
    tied = AutoModelForCausalLM.from_config(tied_config)
    tied.save_pretrained(tmp_path / "tied")
    assert "lm_head.weight" not in load_file(tmp_path / "tied" / "model.safetensors"), "the file stores it once"
    shutil.copytree(tmp_path / "tied", tmp_path / "incomplete")
    weights = load_file(tmp_path / "incomplete" / "model.safetensors")
    del weights["model.norm.weight"]
    save_file(weights, tmp_path / "incomplete" / "model.safetensors")
    checkpoint_bytes = _large_checkpoint(tmp_path / "large")
    assert checkpoint_bytes > 1.5e9

    spawn_ranks(_worker, (rendezvous(tmp_path), str(tmp_path)))
    results = torch.load(tmp_path / "results.pt", weights_only=True)
    with torch.no_grad():
        torch.testing.assert_close(results["tied_logits"], tied.eval()(input_ids=IDS).logits, atol=1e-5, rtol=1e-5)
    assert results["reuse_equal"]
    assert results["meta_before_shard"] == [True], "parameters existed in full before sharding"
    assert results["embed_rows"][0] == results["embed_rows"][1] // 2, "each rank holds its shard only"
    assert "lacks weights the model needs: model.norm.weight" in results["incomplete"]
    with torch.device("meta"):
        numels = [p.numel() for p in AutoModelForCausalLM.from_config(LlamaConfig(**LARGE)).parameters()]
    assert results["large_sum"] == pytest.approx(sum(n / 1000 * size for n, size in enumerate(numels)), rel=1e-6)
    print(f"rank 0 peak rise while loading: {results['load_rise'] / 1e9:.2f} GB of a {checkpoint_bytes / 1e9:.2f} GB "
          "checkpoint")
    assert results["load_rise"] < checkpoint_bytes
