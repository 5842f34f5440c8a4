"""Grouping a stream of tokenized pairs into batches: a fixed number of pairs, or a token budget.

A pair is never split: both its rows go into the same batch. Rows are padded to the longest row
of their batch, so batches of pairs of similar length waste little compute on padding. Length
grouping pools pairs, sorts each pool by length and cuts it: into batches of exactly
`batch_size` pairs (`grouped_batches`, Hugging Face's `group_by_length`), or greedily into
batches whose padded size `2 * pairs * longest row` stays within `max_num_tokens`
(`budget_batches`). The batches of a pool come out in a seeded random order, so training does
not see lengths in increasing order; the pool bounds how far a pair can move from its place in
the stream.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
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


def grouped_batches(
    pairs: Iterable[TokenizedPair],
    batch_size: int,
    pool_size: int,
    rng: random.Random,
    length: Callable[[TokenizedPair], int] = lambda p: p.length,
) -> Iterator[Batch]:
    """Batches of `batch_size` pairs of similar `length`, in a seeded random order.

    `length` is the width a pair's row is padded to in the layout the batch is encoded in
    (`TokenizedPair.length` for padded rows, `shared_length` for shared-prompt rows): sorting by
    the other layout's width left 1.7 to 8 times the padding on HH-RLHF pairs. The pool is rounded up to
    a whole number of batches, so every batch holds exactly `batch_size` pairs but the last of
    the stream, as with `fixed_batches`.
    """
    for pool in fixed_batches(pairs, math.ceil(pool_size / batch_size) * batch_size):
        ordered = sorted(pool, key=length)
        batches = [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]
        rng.shuffle(batches)
        yield from batches


def budget_batches(
    pairs: Iterable[TokenizedPair], max_num_tokens: int, pool_size: int, rng: random.Random
) -> Iterator[Batch]:
    """Length-bucketed batches of at most `max_num_tokens` padded tokens each.

    Every pair must fit alone (`2 * pair.length <= max_num_tokens`); the data module guarantees
    it by requiring `max_num_tokens >= 2 * max_seq_len`.
    """
    for pool in fixed_batches(pairs, pool_size):
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
