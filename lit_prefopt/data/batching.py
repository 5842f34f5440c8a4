"""Grouping a stream of tokenized pairs into batches: a fixed number of pairs, or a token budget.

A pair is never split: both its rows go into the same batch. With a token budget, a batch's
padded size `2 * pairs * longest row` stays within `max_num_tokens`; pairs are pooled, sorted by
length and cut greedily (length bucketing), so pairs of similar length share a batch and little
padding is needed. The batches of a pool come out in a seeded random order, so training does not
see lengths in increasing order.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import TypeVar

from lit_prefopt.data.tokenize import TokenizedPair

Batch = list[TokenizedPair]
Item = TypeVar("Item")


def fixed_batches(pairs: Iterable[Item], batch_size: int) -> Iterator[list[Item]]:
    """Consecutive groups of `batch_size` pairs (tokenized or not: lengths play no part); the last one may be smaller."""
    batch: list[Item] = []
    for pair in pairs:
        batch.append(pair)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def budget_batches(
    pairs: Iterable[TokenizedPair], max_num_tokens: int, pool_size: int, rng: random.Random
) -> Iterator[Batch]:
    """Length-bucketed batches of at most `max_num_tokens` padded tokens each.

    Every pair must fit alone (`2 * pair.length <= max_num_tokens`); the data module guarantees
    it by requiring `max_num_tokens >= 2 * max_seq_len`.
    """
    pool: Batch = []
    for pair in pairs:
        pool.append(pair)
        if len(pool) == pool_size:
            yield from _cut_pool(pool, max_num_tokens, rng)
            pool = []
    if pool:
        yield from _cut_pool(pool, max_num_tokens, rng)


def _cut_pool(pool: Batch, max_num_tokens: int, rng: random.Random) -> Iterator[Batch]:
    batches: list[Batch] = []
    batch: Batch = []
    for pair in sorted(pool, key=lambda p: p.length):
        # Sorted ascending, so the newcomer is the longest row of the batch it joins.
        if batch and 2 * (len(batch) + 1) * pair.length > max_num_tokens:
            batches.append(batch)
            batch = []
        if 2 * pair.length > max_num_tokens:
            raise ValueError(f"a pair of {pair.length} tokens per row does not fit max_num_tokens={max_num_tokens}")
        batch.append(pair)
    batches.append(batch)
    rng.shuffle(batches)
    yield from batches
