"""FSDP2 loading on 2 CPU processes (gloo): meta build, DTensor shards, same logits as unsharded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.gloo import free_port, gloo_group


def _worker(rank: int, world: int, port: int, model_dir: str, out_dir: str) -> None:
    with gloo_group(rank, port, world):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import DTensor

        import lit_prefopt.models.sharding as sharding
        from lit_prefopt.models.sharding import full_state_dict, load_sharded

        real_shard = sharding.shard

        def shard_checking_meta(model, mesh, mp_policy=None):
            assert all(p.is_meta for p in model.parameters()), "parameters exist in full before sharding"
            real_shard(model, mesh, mp_policy)

        sharding.shard = shard_checking_meta
        mesh = init_device_mesh("cpu", (world,))
        model = load_sharded(model_dir, mesh, torch.device("cpu"), torch.float32)
        params = dict(model.named_parameters())
        assert all(isinstance(p, DTensor) for p in params.values()), "every parameter is a DTensor shard"
        embed = params["model.embed_tokens.weight"]
        assert embed.to_local().shape[0] == embed.shape[0] // world, "each rank holds its shard only"
        ids = torch.tensor([[0, 5, 9, 33, 2, 7]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        full = full_state_dict(model)
        if rank == 0:
            torch.save({"logits": logits, "state": full}, Path(out_dir) / "sharded.pt")


@pytest.mark.slow
def test_sharded_load_matches_unsharded(tiny_llama, tmp_path: Path) -> None:
    mp.start_processes(_worker, args=(2, free_port(), tiny_llama.path, str(tmp_path)), nprocs=2, start_method="spawn")
    result = torch.load(tmp_path / "sharded.pt", weights_only=True)
    reference = tiny_llama.load_policy().eval()
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor([[0, 5, 9, 33, 2, 7]])).logits
    torch.testing.assert_close(result["logits"], expected, atol=1e-5, rtol=1e-5)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(result["state"][name], tensor)
