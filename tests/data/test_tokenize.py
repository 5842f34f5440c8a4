"""Tokenization by fairseq2's rule, chat records, prompt masking and the truncation rule."""

from __future__ import annotations

import torch

from lit_prefopt.data.collate import collate_pairs
from lit_prefopt.data.records import parse_record
from lit_prefopt.data.tokenize import PairTokenizer, TokenizedPair, fit_length


def record(**fields):
    import json

    return parse_record(json.dumps(fields).encode(), "f.jsonl:1")


def test_text_pair_shares_prompt_and_places_bos_and_eos(tokenizer):
    tok = PairTokenizer(tokenizer)
    pair = tok(record(src="User: What is 2 + 2?\nAssistant:", tgt_chosen=" It is 4.", tgt_rejected=" Maybe 5."))
    assert pair.prompt[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in pair.prompt[1:]
    assert list(pair.prompt[1:]) == tokenizer("User: What is 2 + 2?\nAssistant:", add_special_tokens=False)["input_ids"]
    for completion, text in ((pair.chosen, " It is 4."), (pair.rejected, " Maybe 5.")):
        assert completion[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in completion[:-1]
        assert tokenizer.bos_token_id not in completion
        assert list(completion[:-1]) == tokenizer(text, add_special_tokens=False)["input_ids"]
    batch = collate_pairs([pair], pad_id=tokenizer.pad_token_id)
    chosen_row, rejected_row = batch.input_ids
    assert chosen_row[: len(pair.prompt)].tolist() == rejected_row[: len(pair.prompt)].tolist() == list(pair.prompt)


def test_prompt_and_padding_are_masked(tokenizer):
    tok = PairTokenizer(tokenizer)
    pairs = [tok(record(src="Hi", tgt_chosen=" a long answer here", tgt_rejected=" no")), tok(record(src="Hello there friend", tgt_chosen=" ok", tgt_rejected=" nope"))]
    batch = collate_pairs(pairs, pad_id=tokenizer.pad_token_id, counts={"truncated": 0})
    assert batch.input_ids.shape[0] == 4 and batch.pair_weights.tolist() == [1.0, 1.0]
    rows = [p.prompt + p.chosen for p in pairs] + [p.prompt + p.rejected for p in pairs]
    for row_index, row in enumerate(rows):
        prompt_len = len(pairs[row_index % 2].prompt)
        expected = [False] * prompt_len + [True] * (len(row) - prompt_len)
        width = batch.input_ids.shape[1]
        assert batch.completion_mask[row_index].tolist() == expected + [False] * (width - len(row))
        assert batch.attention_mask[row_index].sum() == len(row)
        assert (batch.input_ids[row_index, len(row):] == tokenizer.pad_token_id).all()
    unmasked = collate_pairs(pairs, pad_id=tokenizer.pad_token_id, mask_source_tokens=False)
    assert unmasked.completion_mask[0, 0] == False and unmasked.completion_mask[0, 1:len(rows[0])].all()  # noqa: E712


def test_reference_scores_of_zero_are_kept():
    pairs = [TokenizedPair((0, 5), (6, 1), (7, 1), reference_chosen=0.0, reference_rejected=-1.5)]
    batch = collate_pairs(pairs, pad_id=2)
    assert batch.reference_chosen.tolist() == [0.0] and batch.reference_rejected.tolist() == [-1.5]
    assert collate_pairs([TokenizedPair((0, 5), (6, 1), (7, 1))], pad_id=2).reference_chosen is None


def test_truncation_keeps_prompt_end_and_completion_start():
    bos = 0
    pair = TokenizedPair(prompt=(bos, *range(10, 30)), chosen=tuple(range(100, 140)), rejected=(200, 201, 1))
    cut = fit_length(pair, max_seq_len=16, bos=bos)
    assert cut.truncated and cut.length <= 16
    # The long completion leaves less than half the window: the prompt keeps half, with BOS in front.
    assert cut.prompt == (bos, *range(23, 30))
    assert cut.chosen == tuple(range(100, 108)) and cut.rejected == (200, 201, 1)
    short_completion = fit_length(TokenizedPair((bos, *range(10, 30)), (100, 1), (200, 201, 1)), 16, bos)
    assert short_completion.prompt == (bos, *range(18, 30)) and short_completion.chosen == (100, 1)
    # At least one completion token survives even a tiny window.
    tiny = fit_length(pair, max_seq_len=2, bos=bos)
    assert tiny.prompt == (bos,) and tiny.chosen == (100,) and tiny.rejected == (200,)
    assert fit_length(pair, max_seq_len=100, bos=bos) is pair


def test_chat_records_share_the_rendered_prompt_and_score_only_the_assistant_turn(tokenizer):
    tok = PairTokenizer(tokenizer)
    chat = record(
        prompt=[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "What is 2 + 2?"}],
        chosen=[{"role": "assistant", "content": "It is 4."}],
        rejected=[{"role": "assistant", "content": "Go away."}],
    )
    pair = tok(chat)
    prompt_text = tokenizer.decode(pair.prompt)
    assert prompt_text.count("<s>") == 1 and prompt_text.startswith("<s>")
    assert prompt_text.endswith("<|assistant|>\n")
    assert tokenizer.decode(pair.chosen) == "It is 4.</s>" and tokenizer.decode(pair.rejected) == "Go away.</s>"
    batch = collate_pairs([pair], pad_id=tokenizer.pad_token_id)
    scored = batch.input_ids[0][batch.completion_mask[0]].tolist()
    assert scored == list(pair.chosen)


def test_text_and_chat_records_mix_in_one_file(tokenizer, write_jsonl):
    from lit_prefopt.data.datamodule import PreferenceDataModule

    path = write_jsonl("mixed.jsonl", [
        {"src": "Hi", "tgt_chosen": " hello", "tgt_rejected": " go"},
        {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "hello"}], "rejected": [{"role": "assistant", "content": "go"}]},
    ])
    dm = PreferenceDataModule([str(path)], batch_size=2, shuffle=False, tokenizer=tokenizer)
    assert dm.scan().num_train_records == 2
    (batch,) = list(dm.train_dataloader())
    assert batch.num_pairs == 2 and torch.equal(batch.pair_weights, torch.ones(2))
