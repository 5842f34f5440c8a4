"""Each kind of bad input is reported with its file and line: by the scan, under `skip`, and in the stream."""

from __future__ import annotations

import gzip

import pytest

from lit_prefopt.data.datamodule import PreferenceDataModule
from lit_prefopt.data.records import DataValidationError
from tests.data.pairs import pair

BAD_LINES = [
    ("{not json", "invalid JSON"),
    ('{"src": "q', "invalid JSON (Unterminated string starting at column 9)"),
    ('["a", "b"]', "expected a JSON object, got array"),
    ('{"src": "q", "tgt_chosen": "a"}', "missing field 'tgt_rejected'"),
    ('{"src": "q", "tgt_chosen": 3, "tgt_rejected": "b"}', "field 'tgt_chosen' must be a string, got number"),
    ('{"src": "  ", "tgt_chosen": "a", "tgt_rejected": "b"}', "field 'src' is empty"),
    ('{"src": "q", "tgt_chosen": "same", "tgt_rejected": "same"}', "chosen and rejected completions are identical"),
    (b'{"src": "q\xff", "tgt_chosen": "a", "tgt_rejected": "b"}', "undecodable bytes (not UTF-8)"),
    ('\ufeff{"src": "q", "tgt_chosen": "a", "tgt_rejected": "b"}', "byte order mark (BOM) inside the file"),
    ('{"question": "q"}', "missing fields"),
    ('{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "user", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}', "chosen[0].role must be one of assistant"),
    ('{"src": "q", "tgt_chosen": "a", "tgt_rejected": "b", "reference_score_chosen": 0.0}', "'reference_score_chosen' is given but 'reference_score_rejected' is not"),
    ('{"src": "hello \\ud800 world", "tgt_chosen": "a", "tgt_rejected": "b"}', "field 'src' has an unpaired surrogate escape"),
    ('{"prompt": [{"role": "user", "content": "\\udfff"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}', "prompt[0].content has an unpaired surrogate escape"),
]


@pytest.mark.parametrize("line, problem", BAD_LINES, ids=[p for _, p in BAD_LINES])
def test_scan_names_file_line_and_problem(write_jsonl, line, problem):
    path = write_jsonl("train.jsonl", [pair(0), pair(1), line, pair(3)])
    dm = PreferenceDataModule([str(path)])
    with pytest.raises(DataValidationError) as error:
        dm.scan()
    assert f"{path}:3: {problem}" in str(error.value)


def test_bom_at_file_start_is_accepted(write_jsonl):
    path = write_jsonl("bom.jsonl", ["\ufeff" + __import__("json").dumps(pair(0)), pair(1)])
    assert PreferenceDataModule([str(path)]).scan().num_train_records == 2


def test_empty_and_missing_files(write_jsonl, tmp_path):
    empty = write_jsonl("empty.jsonl", [])
    good = write_jsonl("good.jsonl", [pair(0)])
    with pytest.raises(DataValidationError, match=f"{empty}: empty file"):
        PreferenceDataModule([str(good), str(empty)]).scan()
    with pytest.raises(FileNotFoundError, match=f"data.train_files: {tmp_path}/nope.jsonl does not exist"):
        PreferenceDataModule([str(tmp_path / "nope.jsonl")]).scan()
    with pytest.raises(FileNotFoundError, match="data.val_files: .*nope.jsonl does not exist"):
        PreferenceDataModule([str(good)], val_files=[str(tmp_path / "nope.jsonl")], validate=False).scan()


def test_skip_counts_bad_records_and_stream_skips_them(write_jsonl, tokenizer):
    path = write_jsonl("train.jsonl", [pair(0), "{oops", pair(2), "[]", pair(4)])
    dm = PreferenceDataModule([str(path)], on_bad_record="skip", batch_size=8, shuffle=False, tokenizer=tokenizer)
    scan = dm.scan()
    assert (scan.num_train_records, scan.num_skipped) == (3, 2)
    assert scan.problems[0].startswith(f"{path}:2: invalid JSON")
    (batch,) = list(dm.train_dataloader())
    assert batch.ids == ["0", "2", "4"] and batch.counts["skipped"] == 2


def test_unscanned_bad_record_stops_the_stream_with_file_and_line(write_jsonl, tokenizer):
    path = write_jsonl("train.jsonl", [pair(0), pair(1), "{oops"])
    dm = PreferenceDataModule([str(path)], validate=False, tokenizer=tokenizer)
    assert dm.scan().has_reference_scores is False
    with pytest.raises(DataValidationError, match=f"{path}:3: invalid JSON"):
        list(dm.train_dataloader())


def test_mostly_dropped_data_is_an_error(write_jsonl, tokenizer):
    long = {"src": "word " * 50, "tgt_chosen": " a", "tgt_rejected": " b"}
    path = write_jsonl("train.jsonl", [pair(0), long, dict(long, tgt_chosen=" c")])
    dm = PreferenceDataModule([str(path)], max_seq_len=20, truncation="drop", tokenizer=tokenizer)
    with pytest.raises(DataValidationError, match="2 of 3 pairs were dropped .*data.max_dropped_fraction=0.5"):
        list(dm.train_dataloader())
    batches = list(PreferenceDataModule([str(path)], max_seq_len=20, tokenizer=tokenizer, shuffle=False).train_dataloader())
    assert batches[0].counts["truncated"] == 2 and max(batches[0].attention_mask.sum(1)) <= 20


def test_reference_scores_known_from_scan(write_jsonl):
    scored = write_jsonl("a.jsonl", [pair(0, reference_score_chosen=0.0, reference_score_rejected=-2.0)])
    unscored = write_jsonl("b.jsonl", [pair(1)])
    assert PreferenceDataModule([str(scored)], val_files=[str(scored)]).scan().has_reference_scores
    assert not PreferenceDataModule([str(scored)], val_files=[str(unscored)]).scan().has_reference_scores


def test_inputs_directories_and_gzip(tmp_path, write_jsonl, tokenizer):
    write_jsonl("dir/b.jsonl", [pair(2), pair(3)])
    write_jsonl("dir/sub/a.jsonl", [pair(0)])
    with gzip.open(tmp_path / "dir" / "c.jsonl.gz", "wt") as out:
        out.write("\n".join(__import__("json").dumps(pair(i)) for i in (4, 5)) + "\n")
    (tmp_path / "dir" / "notes.txt").write_text("not data")
    write_jsonl("dir/.ipynb_checkpoints/b-checkpoint.jsonl", [pair(2)])  # an editor's copy, not data
    dm = PreferenceDataModule([str(tmp_path / "dir")], shuffle=False, batch_size=10, tokenizer=tokenizer)
    assert dm.scan().num_train_records == 5
    (batch,) = list(dm.train_dataloader())
    assert batch.ids == ["2", "3", "4", "5", "0"]  # sorted paths: b.jsonl, c.jsonl.gz, sub/a.jsonl


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=0), "data.batch_size must be a positive integer, got 0"),
        (dict(truncation="cut"), "data.truncation must be 'truncate' or 'drop', got 'cut'"),
        (dict(on_bad_record="ignore"), "data.on_bad_record must be 'error' or 'skip'"),
        (dict(max_seq_len=1), "data.max_seq_len must be an integer >= 2, got 1"),
        (dict(max_num_tokens=100, max_seq_len=64), r"data.max_num_tokens \(100\) must be at least 2 \* data.max_seq_len"),
        (dict(num_workers=-1), "data.num_workers must be a non-negative integer"),
        (dict(validate="yes"), "data.validate must be true or false"),
        (dict(max_dropped_fraction=2), r"data.max_dropped_fraction must be a number in \[0, 1\]"),
        (dict(pack=True, share_prompt=False), "data.pack=true packs shared-prompt rows: it needs data.share_prompt=true"),
        (dict(share_prompt=True, pack_length=4096), "data.pack_length is set but data.pack=false"),
        (dict(share_prompt=True, pack=True, pack_length=100, max_seq_len=64), r"data.pack_length must be null or an integer >= 2 \* data.max_seq_len = 128"),
        (dict(pack=True, pack_length=512, max_seq_len=64, max_num_tokens=256),
         r"data.pack_length \(512\) exceeds data.max_num_tokens \(256\): .* set data.pack_length<=256 or null"),
    ],
)
def test_config_values_are_checked_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PreferenceDataModule(["x.jsonl"], **kwargs)


def test_skipped_and_dropped_pairs_are_all_counted(write_jsonl, tokenizer):
    """Every skip and drop reaches some batch's counts, not only those before the first batch:
    10 bad lines and 20 over-long pairs among 40 good ones, batches of 4."""
    long = {"src": "word " * 50, "tgt_chosen": " a", "tgt_rejected": " b"}
    lines = []
    for index in range(40):
        lines.append(pair(index))
        if index % 4 == 1:
            lines.append("{oops")
        if index % 2 == 0:
            lines.append(dict(long, tgt_chosen=f" c{index}"))
    path = write_jsonl("train.jsonl", lines)
    dm = PreferenceDataModule([str(path)], on_bad_record="skip", truncation="drop", max_seq_len=20, batch_size=4,
                              shuffle=False, tokenizer=tokenizer)
    batches = list(dm.train_dataloader())
    assert sum(len(b.ids) for b in batches) == 40
    assert sum(b.counts.get("skipped", 0) for b in batches) == 10
    assert sum(b.counts.get("dropped", 0) for b in batches) == 20


def test_mostly_dropped_data_stops_within_a_long_epoch(write_jsonl, tokenizer, monkeypatch):
    """The check also runs every DROPPED_CHECK_EVERY records, so a run that ends before its first
    epoch does not train on the few pairs left."""
    from lit_prefopt.data import dataset

    monkeypatch.setattr(dataset, "DROPPED_CHECK_EVERY", 10)
    long = {"src": "word " * 50, "tgt_chosen": " a", "tgt_rejected": " b"}
    path = write_jsonl("train.jsonl", [pair(0)] + [dict(long, tgt_chosen=f" c{i}") for i in range(30)])
    loader = iter(PreferenceDataModule([str(path)], max_seq_len=20, truncation="drop", batch_size=1, shuffle=False,
                                       tokenizer=tokenizer).train_dataloader())
    with pytest.raises(DataValidationError, match="9 of 10 pairs were dropped"):
        next(loader)


def test_pairs_with_reference_scores_are_dropped_not_truncated(write_jsonl, tokenizer):
    """Scores summed over a whole completion do not match a cut one: such a pair is dropped and
    counted, while an unscored long pair is truncated."""
    long = {"src": "word " * 50, "tgt_chosen": " a", "tgt_rejected": " b"}
    scored = dict(long, reference_score_chosen=-1.0, reference_score_rejected=-2.0)
    path = write_jsonl("train.jsonl", [pair(0, reference_score_chosen=0.0, reference_score_rejected=-1.0), scored,
                                       pair(2, reference_score_chosen=-3.0, reference_score_rejected=-4.0)])
    (batch,) = list(PreferenceDataModule([str(path)], max_seq_len=20, batch_size=8, shuffle=False,
                                         tokenizer=tokenizer).train_dataloader())
    assert batch.ids == ["0", "2"] and batch.counts == {"dropped": 1}
    assert batch.reference_chosen.tolist() == [0.0, -3.0]


def test_reference_scores_are_ignored_when_prompts_are_scored(write_jsonl, tokenizer):
    """The scores cover completion tokens only: with data.mask_source_tokens=false the scan says
    a reference model is needed and batches carry no scores."""
    path = write_jsonl("train.jsonl", [pair(0, reference_score_chosen=0.0, reference_score_rejected=-1.0)])
    dm = PreferenceDataModule([str(path)], mask_source_tokens=False, tokenizer=tokenizer)
    assert not dm.scan().has_reference_scores
    (batch,) = list(dm.train_dataloader())
    assert batch.reference_chosen is None


def test_chat_template_refusals_are_bad_records_at_their_line(write_jsonl, tokenizer):
    """A template that raises (as Gemma's does for a system turn) names the record's line, and
    `skip` skips it."""
    import copy

    strict = copy.deepcopy(tokenizer)
    strict.chat_template = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" + tokenizer.chat_template
    chat = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}]}
    system = dict(chat, prompt=[{"role": "system", "content": "be nice"}, {"role": "user", "content": "q"}])
    path = write_jsonl("train.jsonl", [chat, system, chat])
    with pytest.raises(DataValidationError, match=f"{path}:2: the chat template refused the messages: System role not supported"):
        list(PreferenceDataModule([str(path)], shuffle=False, tokenizer=strict).train_dataloader())
    (batch,) = list(PreferenceDataModule([str(path)], shuffle=False, on_bad_record="skip", tokenizer=strict).train_dataloader())
    assert len(batch.ids) == 2 and batch.counts["skipped"] == 1
    no_template = copy.deepcopy(tokenizer)
    no_template.chat_template = None
    with pytest.raises(DataValidationError, match=f"{path}:1: chat record, but the tokenizer has no chat template"):
        list(PreferenceDataModule([str(path)], shuffle=False, tokenizer=no_template).train_dataloader())
