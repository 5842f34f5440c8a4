"""The global gradient norm and clipping over FSDP2 shards: right values, one all-reduce.

2 gloo processes hold row shards of three gradients (one of them split unevenly, 5 rows over 2
ranks); the norm must be the norm of the full tensors on both ranks, and cost one all-reduce.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tests.gloo import gloo_group, rendezvous, spawn_ranks

FULL = [torch.arange(12.0).reshape(4, 3), torch.tensor([3.0, 0.0, 4.0, 0.0, 0.0]), torch.full((2, 2), 0.5)]
# sqrt(sum(0..11 squared) + 3^2 + 4^2 + 4 * 0.25) = sqrt(506 + 25 + 1)
EXPECTED_NORM = 532.0**0.5


def count_all_reduces(calls: list[str]) -> None:
    """Record every all-reduce, whether through torch.distributed or DTensor's functional collectives."""
    import torch.distributed._functional_collectives as funcol

    plain, functional = dist.all_reduce, funcol.all_reduce

    def plain_all_reduce(*args, **kwargs):
        calls.append("all_reduce")
        return plain(*args, **kwargs)

    def functional_all_reduce(*args, **kwargs):
        calls.append("functional all_reduce")
        return functional(*args, **kwargs)

    dist.all_reduce, funcol.all_reduce = plain_all_reduce, functional_all_reduce


def worker(rank: int, rendezvous_file: str, out: str) -> None:
    with gloo_group(rank, rendezvous_file):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Shard, distribute_tensor

        from lit_prefopt.gradients import scale_and_clip_

        mesh = init_device_mesh("cpu", (2,))
        grads = [distribute_tensor(full.clone(), mesh, [Shard(0)]) for full in FULL]
        calls: list[str] = []
        count_all_reduces(calls)
        norm = scale_and_clip_(grads, torch.tensor(2.0), max_norm=1.0)
        clipped = [g.full_tensor() for g in grads]
        torch.save({"norm": norm, "calls": calls, "clipped": clipped}, f"{out}.{rank}")



@pytest.mark.slow
def test_sharded_norm_and_clipping_cost_one_all_reduce(tmp_path: Path) -> None:
    out = str(tmp_path / "norm")
    spawn_ranks(worker, (rendezvous(tmp_path), out))
    for rank in range(2):
        result = torch.load(f"{out}.{rank}", weights_only=True)
        assert result["calls"] == ["all_reduce"]
        torch.testing.assert_close(result["norm"], torch.tensor(2.0 * EXPECTED_NORM))
        # Scaled by 2, then clipped to norm 1: each gradient ends as full / ||full||.
        for got, full in zip(result["clipped"], FULL):
            torch.testing.assert_close(got, full / EXPECTED_NORM, rtol=1e-5, atol=1e-6)


def test_plain_gradients_scale_without_clipping_below_the_limit() -> None:
    from lit_prefopt.gradients import scale_and_clip_

    grads = [full.clone() for full in FULL]
    norm = scale_and_clip_(grads, 0.5, max_norm=1000.0)
    torch.testing.assert_close(norm, torch.tensor(0.5 * EXPECTED_NORM))
    for got, full in zip(grads, FULL):
        torch.testing.assert_close(got, 0.5 * full)
