"""`data.group_by_length`: fixed-size batches of pairs of similar length, seeded and resumable."""

from __future__ import annotations

import random

import pytest

from lit_prefopt.data.batching import grouped_batches
from lit_prefopt.data.shared_prefix import share_prompts
from lit_prefopt.data.tokenize import TokenizedPair
from tests.data.pairs import pair
from tests.data.test_stream import loader, real_ids
from tests.hh_harmless import HH_TRAIN


def sized(index: int, length: int) -> TokenizedPair:
    """A pair whose `length` (prompt + longer completion) is `length`, told apart by its id."""
    return TokenizedPair(prompt=(1,) * (length - 1), chosen=(2,), rejected=(3,), id=str(index))


def test_grouped_batches_cut_each_sorted_pool_into_batch_size_pieces() -> None:
    # Lengths 13, 12, ..., 1: a pool of 5 rounds up to 6 (two batches of 3), so the pools are the
    # first 6, the next 6 and the last 1 pairs, each sorted ascending and cut into threes.
    pairs = [sized(i, 13 - i) for i in range(13)]
    batches = list(grouped_batches(pairs, batch_size=3, pool_size=5, rng=random.Random(0)))
    lengths = [[p.length for p in batch] for batch in batches]
    assert sorted(lengths[:2]) == [[8, 9, 10], [11, 12, 13]]
    assert sorted(lengths[2:4]) == [[2, 3, 4], [5, 6, 7]]
    assert lengths[4:] == [[1]]
    again = list(grouped_batches(pairs, batch_size=3, pool_size=5, rng=random.Random(0)))
    assert [[p.id for p in b] for b in again] == [[p.id for p in b] for b in batches]


def test_grouped_batches_sort_by_the_given_width() -> None:
    # Longer prompts with shorter completions: by `length` (3 + 1, 2 + 2, 1 + 3 tokens: all 4) the
    # order is kept; by `shared_length` (5, 6, 7) too; by the negated chosen length it reverses.
    pairs = [TokenizedPair((1,) * (3 - i), (2,) * (1 + i), (3,) * (1 + i), id=str(i)) for i in range(3)]
    assert [p.shared_length for p in pairs] == [5, 6, 7]
    (batch,) = grouped_batches(pairs, 3, 3, random.Random(0), length=lambda p: -len(p.chosen))
    assert [p.id for p in batch] == ["2", "1", "0"]


def test_grouped_batches_come_in_a_seeded_order() -> None:
    pairs = [sized(i, 1 + (7 * i) % 40) for i in range(40)]
    orders = {seed: [tuple(p.id for p in b) for b in grouped_batches(pairs, 4, 40, random.Random(seed))] for seed in range(3)}
    assert len({tuple(order) for order in orders.values()}) == 3
    assert all(sorted(order) == sorted(orders[0]) for order in orders.values())  # the same batches, reordered


def widths(batch, share_prompt: bool) -> list[int]:
    """Each pair's row width in the layout it is encoded in: its longer padded row, or its shared row."""
    rows = batch.attention_mask.sum(dim=1).view(2, -1)
    if not share_prompt:
        return rows.max(dim=0).values.tolist()
    prompts = batch.completion_mask.int().argmax(dim=1).view(2, -1)[0]
    return (rows.sum(dim=0) - prompts).tolist()


def records(count: int) -> list[dict]:
    """Pairs of 1 to 6 repeated words of prompt and 1 to 4 of completion, so lengths vary and tie."""
    return [dict(pair(i, src="a longer question " * (1 + (i * 5) % 6), tgt_chosen=" yes" * (1 + i % 4))) for i in range(count)]


@pytest.mark.parametrize("share_prompt", [True, False])
def test_stream_batches_hold_batch_size_pairs_of_similar_width_once_per_epoch(write_jsonl, tokenizer, share_prompt) -> None:
    path = write_jsonl("train.jsonl", records(50))
    settings = dict(batch_size=4, bucket_pool=24, shuffle_buffer=8, seed=1, share_prompt=share_prompt)
    grouped = loader(path, tokenizer, **settings)
    epoch0, epoch1 = list(grouped), list(grouped)
    for epoch in (epoch0, epoch1):
        assert [b.num_real_pairs for b in epoch] == [4] * 12 + [2]
        assert sorted(real_ids(epoch), key=int) == [str(i) for i in range(50)]
    # Within each pool of 24 pairs (6 batches) the batches are sorted pieces: no two overlap in width.
    pieces = [sorted(widths(b, share_prompt)) for b in epoch0]
    for pool in (pieces[:6], pieces[6:12]):
        ordered = sorted(pool)
        assert all(earlier[-1] <= later[0] for earlier, later in zip(ordered, ordered[1:]))
    assert real_ids(epoch0) != real_ids(epoch1)
    assert [b.ids for b in loader(path, tokenizer, **settings)] == [b.ids for b in epoch0]


def test_unshuffled_stream_keeps_the_file_order(write_jsonl, tokenizer) -> None:
    path = write_jsonl("train.jsonl", records(10))
    batches = list(loader(path, tokenizer, batch_size=4, shuffle=False, group_by_length=True))
    assert [b.ids for b in batches] == [["0", "1", "2", "3"], ["4", "5", "6", "7"], ["8", "9"]]


@pytest.mark.parametrize("share_prompt", [True, False])
def test_grouping_cuts_padding_on_hh_at_the_same_batch_size(tokenizer, share_prompt) -> None:
    def padding_fraction(group_by_length: bool) -> float:
        batches = list(loader(HH_TRAIN, tokenizer, batch_size=8, max_seq_len=512, group_by_length=group_by_length,
                              share_prompt=share_prompt))
        assert len(real_ids(batches)) == 512 and all(b.num_pairs == 8 for b in batches)
        if not share_prompt:
            return 1 - sum(int(b.attention_mask.sum()) for b in batches) / sum(b.input_ids.numel() for b in batches)
        rows = [share_prompts(b.input_ids, b.attention_mask, b.completion_mask) for b in batches]
        return 1 - sum(r.num_tokens for r in rows) / sum(r.input_ids.numel() for r in rows)

    # Measured with this tokenizer: shared rows 0.35 -> 0.016, padded rows 0.34 -> 0.11 (a pool of 1,000
    # holds the whole file). Sorting by the other layout's width would not get below these bounds.
    assert padding_fraction(True) < (0.1 if share_prompt else 0.4) * padding_fraction(False)
