"""Activation checkpointing under FSDP2 (2 gloo processes), as GPU configs train: the recomputation
reuses the attention kernel's kept output, once per checkpointed layer, with the same gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.gloo import gloo_group, rendezvous, spawn_ranks


def worker(rank: int, rendezvous_file: str, model_dir: str, out: str, keep_attention: bool) -> None:
    with gloo_group(rank, rendezvous_file):
        from torch.distributed.device_mesh import init_device_mesh

        from lit_prefopt.models.activation_checkpointing import enable_activation_checkpointing
        from lit_prefopt.models.checkpoint import HFCheckpoint
        from tests.test_activation_checkpointing import CountFlashAttention, _shared_prompt_mask

        policy = HFCheckpoint(path=model_dir, gradient_checkpointing=True).load_policy(mesh=init_device_mesh("cpu", (2,)))
        enable_activation_checkpointing(policy, keep_attention=keep_attention)
        generator = torch.Generator().manual_seed(rank)
        ids = torch.randint(4, policy.config.vocab_size, (2, 12), generator=generator)
        with CountFlashAttention() as count:
            policy(input_ids=ids, attention_mask=_shared_prompt_mask(2, 12, prompt=4), use_cache=False).logits.square().mean().backward()
        grads = {name: p.grad.full_tensor() for name, p in policy.named_parameters()}
        torch.save({"grads": grads, "flash_calls": count.calls, "layers": policy.config.num_hidden_layers}, f"{out}.{rank}")


@pytest.mark.slow
def test_fsdp2_recomputation_keeps_attention_with_the_same_gradients(tiny_llama, tmp_path: Path) -> None:
    results = {}
    for keep in (False, True):
        run = tmp_path / f"keep_{keep}"
        run.mkdir()
        spawn_ranks(worker, (rendezvous(run), tiny_llama.path, str(run / "out"), keep))
        results[keep] = [torch.load(f"{run / 'out'}.{rank}") for rank in range(2)]
    for rank in range(2):
        recomputed, kept = results[False][rank], results[True][rank]
        layers = kept["layers"]
        assert recomputed["flash_calls"] == 2 * layers - 1 and kept["flash_calls"] == layers
        for name, grad in recomputed["grads"].items():
            assert torch.equal(kept["grads"][name], grad), name
