"""The plan table: each rank tokenizes only its share, and the ranks still form one process's plan.

Ranks are simulated in one process here: each builds its table share, and `merge_shares` does
what the all-reduce does (tests/distributed/test_plan_table_collective.py runs the collectives).
The data mixes plain, over-long, scored and chat records with one bad line, so the plan depends
on lengths (token budget), on drops (`truncation=drop`, over-long scored pairs) and on skips.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_prefopt.data.dataset import PreferenceStream, StreamSettings
from lit_prefopt.data.plan_table import BAD, DROPPED, LENGTH_BASE, build_share, merge_shares
from lit_prefopt.data.records import BadRecord, parse_record
from lit_prefopt.data.sources import resolve_sources
from lit_prefopt.data.tokenize import PairTokenizer, fit_length
from tests.data.pairs import pair

BAD_LINE = "{not json"
COUNTERS = ("truncated", "dropped", "skipped", "padding_batches")


class CountingTokenizer(PairTokenizer):
    """The real pair tokenizer, recording the id of every record it tokenizes."""

    def __init__(self, tokenizer) -> None:
        super().__init__(tokenizer)
        self.tokenized: list[str] = []

    def __call__(self, record):
        self.tokenized.append(record.id)
        return super().__call__(record)


def chat(index: int) -> dict:
    return {"id": str(index), "prompt": [{"role": "user", "content": f"Question {index}?"}],
            "chosen": [{"role": "assistant", "content": f"yes {index}"}],
            "rejected": [{"role": "assistant", "content": f"no {index}"}]}


def record(index: int) -> dict:
    """Every fifth pair over-long; some scored (one of them over-long, so dropped even when truncating); some chat."""
    if index % 4 == 1:
        return chat(index)
    extra = {"reference_score_chosen": -1.0, "reference_score_rejected": -2.0} if index % 7 == 3 else {}
    if index % 5 == 0:
        extra["src"] = "a much longer question " * 20
    return pair(index, **extra)


LINES = [record(i) for i in range(9)] + [BAD_LINE] + [record(i) for i in range(9, 31)]
SETTINGS = {
    "truncate": dict(batch_size=3, max_seq_len=24),  # grouped by length (the default) through the table's widths
    "ungrouped": dict(batch_size=3, max_seq_len=24, group_by_length=False),
    "drop": dict(batch_size=4, max_seq_len=24, truncation="drop"),  # 17 pairs, 5 batches: rank 1 pads
    "budget": dict(max_num_tokens=96, max_seq_len=24, bucket_pool=8),
}


def streams(path, tokenizer, settings: StreamSettings, world_size: int = 2):
    """Each rank's stream over one merged table, with the ids each rank tokenized for its table share."""
    sources = resolve_sources([str(path)], "data.train_files")
    counting = [CountingTokenizer(tokenizer) for _ in range(world_size)]
    shares = [build_share(sources.files, counting[rank], settings.max_seq_len, settings.truncation, rank, world_size)
              for rank in range(world_size)]
    table = merge_shares(shares, sources.key)
    shared_ids = [Counter(c.tokenized) for c in counting]
    for c in counting:
        c.tokenized.clear()
    return [PreferenceStream(sources, counting[r], settings, r, world_size, table) for r in range(world_size)], shared_ids


def real_ids(batches) -> list[str]:
    return [i for b in batches for i, w in zip(b.ids, b.pair_weights.tolist()) if w > 0]


def counters(batches) -> Counter:
    return Counter({name: sum(b.counts.get(name, 0) for b in batches) for name in COUNTERS})


@pytest.mark.parametrize("mode", SETTINGS)
def test_ranks_tokenize_their_share_and_form_the_single_process_plan(mode, write_jsonl, tokenizer):
    path = write_jsonl("train.jsonl", LINES)
    settings = StreamSettings(**SETTINGS[mode], shuffle_buffer=8, on_bad_record="skip")
    single = list(PreferenceStream(resolve_sources([str(path)], "data.train_files"), PairTokenizer(tokenizer), settings))
    ranks, shared_ids = streams(path, tokenizer, settings)
    batches = [list(stream) for stream in ranks]

    valid_ids = [line["id"] if isinstance(line, dict) else None for line in LINES]
    for rank, stream in enumerate(ranks):
        # The table pass tokenizes the rank's lines (every other line), then the rank tokenizes
        # exactly the pairs of the batches it collates, padding included: nothing else.
        assert shared_ids[rank] == Counter(i for i in valid_ids[rank::2] if i is not None), rank
        assert Counter(stream.tokenizer.tokenized) == Counter(i for b in batches[rank] for i in b.ids), rank
    # One plan: rank r yields batches r, r + 2, ... of the single process's, with the same counts.
    planned = len(single)
    assert len(batches[0]) == len(batches[1]) == (planned + 1) // 2
    for rank in range(2):
        assert [b.ids for b in batches[rank][: len(single[rank::2])]] == [b.ids for b in single[rank::2]]
    assert sorted(real_ids(batches[0]) + real_ids(batches[1]), key=int) == sorted(real_ids(single), key=int)
    total = counters(batches[0]) + counters(batches[1])
    assert total - Counter(padding_batches=planned % 2) == counters(single)
    assert total["skipped"] == 1 and total["dropped"] >= 1


def test_the_table_holds_lengths_drops_and_bad_records(write_jsonl, tokenizer):
    scores = {"reference_score_chosen": -1.0, "reference_score_rejected": -2.0}
    short, scored, long_scored = pair(0), pair(3, **scores), pair(5, src="a much longer question " * 20, **scores)
    path = write_jsonl("train.jsonl", [short, BAD_LINE, scored, long_scored, chat(1)])
    files = resolve_sources([str(path)], "data.train_files").files
    tok = PairTokenizer(tokenizer)
    table = merge_shares([build_share(files, tok, 24, "truncate", rank, 2) for rank in range(2)], "data.train_files")
    pairs = [tok(parse_record(json.dumps(r).encode(), "-")) for r in (short, scored, chat(1))]
    lengths = [p.length for p in pairs]
    # The scored over-long pair is dropped; the over-long chat pair is cut to max_seq_len.
    assert lengths[0] <= 24 and lengths[1] <= 24 and lengths[2] > 24
    assert table.codes.tolist() == [LENGTH_BASE + lengths[0], BAD, LENGTH_BASE + lengths[1], DROPPED, LENGTH_BASE + 24]
    # Shared-row widths, which length grouping sorts by: the chat pair's is that of its truncated pair.
    cut = fit_length(pairs[2], 24, tok.bos).shared_length
    assert table.widths.tolist() == [pairs[0].shared_length, 0, pairs[1].shared_length, 0, cut]
    assert str(table.first_bad_record()).startswith(f"{path}:2: invalid JSON")


def test_a_bad_record_stops_every_rank_at_the_same_line(write_jsonl, tokenizer):
    path = write_jsonl("train.jsonl", LINES)
    ranks, _ = streams(path, tokenizer, StreamSettings(batch_size=3, max_seq_len=24, shuffle=False))
    for stream in ranks:
        with pytest.raises(BadRecord, match=f"^{path}:10: invalid JSON"):
            list(stream)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_every_rank_resumes_exactly_through_the_table(num_workers, write_jsonl, tokenizer):
    path = write_jsonl("train.jsonl", LINES)
    settings = StreamSettings(**SETTINGS["budget"], shuffle_buffer=8, on_bad_record="skip")

    def loaders():
        ranks, _ = streams(path, tokenizer, settings)
        return [StatefulDataLoader(s, batch_size=None, num_workers=num_workers, collate_fn=lambda b: b) for s in ranks]

    uninterrupted = [[b.ids for b in loader] for loader in loaders()]
    first = loaders()[0]
    batches = iter(first)
    next(batches), next(batches)
    state = first.state_dict()
    del batches, first
    for rank, loader in enumerate(loaders()):
        loader.load_state_dict(state)
        assert [b.ids for b in loader] == uninterrupted[rank][2:], f"rank {rank}"


def test_manifest_draws_look_up_their_files_lines(tmp_path, write_jsonl, tokenizer):
    write_jsonl("mix/a.jsonl", [record(i) for i in range(8)])
    write_jsonl("mix/b.jsonl", [record(i) for i in range(100, 106)])
    (tmp_path / "mix" / "manifest.json").write_text(json.dumps(
        {"files": [{"path": "a.jsonl", "weight": 1}, {"path": "b.jsonl", "weight": 3}], "epoch_size": 40}))
    settings = StreamSettings(**SETTINGS["budget"], shuffle_buffer=8)
    single = list(PreferenceStream(resolve_sources([str(tmp_path / "mix")], "data.train_files"), PairTokenizer(tokenizer), settings))
    ranks, shared_ids = streams(tmp_path / "mix", tokenizer, settings)
    batches = [list(stream) for stream in ranks]
    # The table covers a.jsonl's 8 lines, then b.jsonl's 6: rank 0 tokenizes lines 0, 2, ... of both in order.
    in_order = [str(i) for i in [*range(8), *range(100, 106)]]
    assert shared_ids[0] == Counter(in_order[0::2]) and shared_ids[1] == Counter(in_order[1::2])
    for rank in range(2):
        assert [b.ids for b in batches[rank][: len(single[rank::2])]] == [b.ids for b in single[rank::2]]
    assert Counter(real_ids(batches[0]) + real_ids(batches[1])) == Counter(real_ids(single))
    assert counters(batches[0]) + counters(batches[1]) - Counter(padding_batches=len(single) % 2) == counters(single)
