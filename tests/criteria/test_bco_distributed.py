"""BCO's running reward mean is global: 2 gloo processes, each with part of every step's batch,
give the same losses and running mean as 1 process with the whole batch."""

from __future__ import annotations

from pathlib import Path

import torch

from lit_prefopt.criteria.base import PairLogps
from lit_prefopt.criteria.bco import BCOPair
from tests.gloo import gloo_group, rendezvous, spawn_ranks

FIELDS = ("chosen", "rejected", "chosen_lengths", "rejected_lengths", "ref_chosen", "ref_rejected")
# Rank 0 gets the first pair of each step, rank 1 the other two: unequal shares, as token-budget
# batching gives, so a mean of per-rank means would be wrong here.
SPLIT = 1


def steps() -> list[PairLogps]:
    """Two global batches of three pairs, fixed random log-probs."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(2):
        values = -10 * torch.rand(4, 3, generator=generator)
        lengths = torch.tensor([3.0, 5.0, 7.0])
        batches.append(PairLogps(values[0], values[1], lengths, lengths, values[2], values[3]))
    return batches


def shard(logps: PairLogps, rank: int) -> PairLogps:
    part = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
    return PairLogps(*(getattr(logps, field)[part] for field in FIELDS))


def worker(rank: int, rendezvous_file: str, out: str) -> None:
    with gloo_group(rank, rendezvous_file):
        criterion = BCOPair(beta=0.5)
        losses = [criterion(shard(batch, rank)).losses for batch in steps()]
        torch.save({"losses": torch.stack(losses), "delta": criterion.delta}, f"{out}.{rank}")



def test_two_processes_match_one(tmp_path: Path) -> None:
    out = str(tmp_path / "bco")
    spawn_ranks(worker, (rendezvous(tmp_path), out))
    ranks = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(2)]

    single = BCOPair(beta=0.5)
    expected = torch.stack([single(batch).losses for batch in steps()])
    torch.testing.assert_close(torch.cat([r["losses"] for r in ranks], dim=1), expected, atol=1e-6, rtol=0)
    for result in ranks:
        torch.testing.assert_close(result["delta"], single.delta, atol=1e-7, rtol=0)
    assert single.reward_count.item() == 2 * 3 * 2
