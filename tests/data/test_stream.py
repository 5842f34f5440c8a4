"""Sharding across ranks and workers, DDP evenness, resume, token budgets and manifest mixtures."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_prefopt.data.datamodule import PreferenceDataModule
from lit_prefopt.data.dataset import PreferenceStream, StreamSettings
from lit_prefopt.data.sources import resolve_sources
from lit_prefopt.data.tokenize import PairTokenizer
from tests.data.pairs import pair
from tests.hh_harmless import HH_TRAIN


def loader(path, tokenizer, rank=0, world_size=1, num_workers=0, **settings) -> StatefulDataLoader:
    """The loader the data module builds, for an explicit rank (ranks simulated in one process)."""
    stream = PreferenceStream(
        resolve_sources([str(path)], "data.train_files"), PairTokenizer(tokenizer), StreamSettings(**settings), rank, world_size
    )
    return StatefulDataLoader(stream, batch_size=None, num_workers=num_workers, persistent_workers=num_workers > 0, collate_fn=lambda b: b)


def real_ids(batches) -> list[str]:
    return [i for b in batches for i, w in zip(b.ids, b.pair_weights.tolist()) if w > 0]


@pytest.mark.parametrize("num_pairs", [40, 37])
def test_every_pair_seen_once_across_two_ranks_and_two_workers(write_jsonl, tokenizer, num_pairs):
    path = write_jsonl("train.jsonl", [pair(i) for i in range(num_pairs)])
    per_rank = [list(loader(path, tokenizer, rank, 2, num_workers=2, batch_size=4, shuffle_buffer=8)) for rank in range(2)]
    seen = real_ids(per_rank[0]) + real_ids(per_rank[1])
    assert sorted(seen, key=int) == [str(i) for i in range(num_pairs)]
    assert len(per_rank[0]) == len(per_rank[1])


def test_uneven_shards_are_padded_with_zero_weight_batches(write_jsonl, tokenizer):
    # 5 batches of 2 pairs: rank 0 owns batches 0, 2, 4 and rank 1 owns 1, 3, then one padding batch.
    path = write_jsonl("train.jsonl", [pair(i) for i in range(10)])
    rank0, rank1 = (list(loader(path, tokenizer, rank, 2, batch_size=2, shuffle=False)) for rank in range(2))
    assert len(rank0) == len(rank1) == 3
    assert [b.num_real_pairs for b in rank0] == [2, 2, 2] and [b.num_real_pairs for b in rank1] == [2, 2, 0]
    padding = rank1[-1]
    assert padding.num_pairs == 1 and padding.pair_weights.tolist() == [0.0] and padding.completion_mask.any()
    assert padding.counts == {"padding_batches": 1}
    assert sorted(real_ids(rank0 + rank1), key=int) == [str(i) for i in range(10)]


def test_epochs_reshuffle_from_the_seed(write_jsonl, tokenizer):
    path = write_jsonl("train.jsonl", [pair(i) for i in range(30)])
    first = loader(path, tokenizer, batch_size=5, shuffle_buffer=10, seed=3)
    epoch0, epoch1 = real_ids(first), real_ids(first)
    assert sorted(epoch0) == sorted(epoch1) and epoch0 != epoch1
    assert real_ids(loader(path, tokenizer, batch_size=5, shuffle_buffer=10, seed=3)) == epoch0


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("batching", [dict(group_by_length=False), dict(group_by_length=True), dict(max_num_tokens=400)])
def test_resume_continues_with_the_next_unseen_pair(write_jsonl, tokenizer, num_workers, batching):
    records = [pair(i) if i % 3 else dict(pair(i), src="a longer question " * (1 + i % 7)) for i in range(60)]
    path = write_jsonl("train.jsonl", records)
    settings = dict(batch_size=4, shuffle_buffer=16, bucket_pool=12, max_seq_len=128, **batching)
    uninterrupted = [b.ids for b in loader(path, tokenizer, num_workers=num_workers, **settings)]
    first = loader(path, tokenizer, num_workers=num_workers, **settings)
    it = iter(first)
    before = [next(it).ids for _ in range(5)]
    state = first.state_dict()
    del it, first
    resumed = loader(path, tokenizer, num_workers=num_workers, **settings)
    resumed.load_state_dict(state)
    after = [b.ids for b in resumed]
    assert before + after == uninterrupted
    assert real_ids_from(before + after) == sorted(str(i) for i in range(60))


def test_every_rank_resumes_from_rank_zeros_saved_state(write_jsonl, tokenizer):
    """Lightning checkpoints only rank 0's loader state and every rank loads it."""
    path = write_jsonl("train.jsonl", [pair(i) for i in range(40)])
    settings = dict(batch_size=2, shuffle_buffer=8)
    uninterrupted = [[b.ids for b in loader(path, tokenizer, rank, 2, **settings)] for rank in range(2)]
    rank0 = loader(path, tokenizer, 0, 2, **settings)
    it = iter(rank0)
    for _ in range(3):
        next(it)
    state = rank0.state_dict()
    for rank in range(2):
        resumed = loader(path, tokenizer, rank, 2, **settings)
        resumed.load_state_dict(state)
        assert [b.ids for b in resumed] == uninterrupted[rank][3:], f"rank {rank}"


def real_ids_from(id_lists) -> list[str]:
    return sorted(i for ids in id_lists for i in ids)


def test_token_budget_is_respected_and_cuts_padding_on_hh(tokenizer):
    budget, max_seq_len = 4096, 512
    bucketed = list(loader(HH_TRAIN, tokenizer, max_num_tokens=budget, max_seq_len=max_seq_len))
    fixed = list(loader(HH_TRAIN, tokenizer, batch_size=4, max_seq_len=max_seq_len, group_by_length=False))

    def padding_fraction(batches) -> float:
        return 1 - sum(int(b.attention_mask.sum()) for b in batches) / sum(b.input_ids.numel() for b in batches)

    assert all(b.input_ids.numel() <= budget for b in bucketed)
    assert sorted(real_ids(bucketed)) == sorted(real_ids(fixed)) and len(real_ids(fixed)) == 512
    assert padding_fraction(bucketed) < 0.5 * padding_fraction(fixed)
    assert sum(b.counts.get("truncated", 0) for b in bucketed) == sum(b.counts.get("truncated", 0) for b in fixed) > 0


def test_manifest_mixture_follows_the_weights(tmp_path, write_jsonl, tokenizer):
    write_jsonl("mix/a.jsonl", [pair(i) for i in range(20)])
    write_jsonl("mix/b.jsonl", [pair(100 + i) for i in range(200)])
    (tmp_path / "mix" / "manifest.json").write_text(json.dumps(
        {"files": [{"path": "a.jsonl", "weight": 3}, {"path": "b.jsonl", "weight": 1}], "epoch_size": 4000}
    ))
    ids = real_ids(loader(tmp_path / "mix", tokenizer, batch_size=50, seed=7))
    share_a = sum(int(i) < 100 for i in ids) / len(ids)
    assert len(ids) == 4000 and abs(share_a - 0.75) < 0.03
    assert real_ids(loader(tmp_path / "mix", tokenizer, batch_size=50, seed=7)) == ids
    assert Counter(ids)["0"] > 1  # the small file is upsampled, as its weight asks


def _mixture_of_two(tmp_path, write_jsonl, weights: tuple[int, int], epoch_size: int | None = None):
    write_jsonl("mix/a.jsonl", [pair(i) for i in range(100)])
    write_jsonl("mix/b.jsonl", [pair(100 + i) for i in range(100)])
    spec = {"files": [{"path": "a.jsonl", "weight": weights[0]}, {"path": "b.jsonl", "weight": weights[1]}]}
    (tmp_path / "mix" / "manifest.json").write_text(json.dumps({**spec, **({"epoch_size": epoch_size} if epoch_size else {})}))
    return tmp_path / "mix"


def test_manifest_files_continue_where_the_previous_epoch_left_them(tmp_path, write_jsonl, tokenizer):
    """Weights 3:1 over two 100-line files: b.jsonl gets ~50 of an epoch's 200 draws. Each epoch
    takes its next lines, so four epochs read all of it (not the same first ~50 every epoch)."""
    epochs = loader(_mixture_of_two(tmp_path, write_jsonl, (3, 1)), tokenizer, batch_size=10, seed=3, shuffle=False)
    b_lines = [[int(i) - 100 for i in real_ids(epochs) if int(i) >= 100] for _ in range(4)]
    assert b_lines[1][0] == len(b_lines[0]) % 100  # the second epoch starts after the first's last line
    assert set(sum(b_lines, [])) == set(range(100))


def test_a_stream_that_is_the_same_every_epoch_repeats_its_draws(tmp_path, write_jsonl, tokenizer):
    """Validation: every pass over a manifest reads the same pairs (epoch 0's draws); a training
    stream draws a new sample each epoch."""
    mix = _mixture_of_two(tmp_path, write_jsonl, (1, 1), epoch_size=40)
    validation = loader(mix, tokenizer, batch_size=8, shuffle=False, same_every_epoch=True)
    training = loader(mix, tokenizer, batch_size=8, shuffle=False)
    assert [real_ids(validation) for _ in range(3)] == [real_ids(validation)] * 3
    assert real_ids(training) != real_ids(training)
    module = PreferenceDataModule(train_files=[str(mix)], val_files=[str(mix)], batch_size=8, validate=False)
    module.set_tokenizer(tokenizer)
    passes = module.val_dataloader()
    assert [real_ids(passes) for _ in range(3)] == [real_ids(validation)] * 3


def test_resume_on_another_number_of_ranks_stops_saying_why(write_jsonl, tokenizer):
    path = write_jsonl("train.jsonl", [pair(i) for i in range(8)])
    two_ranks = loader(path, tokenizer, 0, 2, batch_size=2)
    next(iter(two_ranks))
    state = two_ranks.state_dict()
    one_rank = loader(path, tokenizer, 0, 1, batch_size=2)
    one_rank.load_state_dict(state)
    with pytest.raises(ValueError, match=r"split over 1 loader stream\(s\) per rank x 2 ranks and is resumed with 1 x 1: resume with data.num_workers=0 or 1 on 2 ranks"):
        next(iter(one_rank))
