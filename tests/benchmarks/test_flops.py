"""The benchmark's FLOP and padding accounting, against counts worked out by hand."""

from __future__ import annotations

from transformers import LlamaConfig

from benchmarks.flops import computed_step_flops, step_flops
from benchmarks.lightning_timer import encoded_tokens
from benchmarks.step_log import EncodedTokens
from lit_prefopt.data.collate import collate_pairs, with_shared_prompts
from lit_prefopt.data.tokenize import TokenizedPair

# One layer, hidden 4, one head (so k and v are 4 wide too), MLP 8, vocabulary 10.
CONFIG = LlamaConfig(hidden_size=4, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                     intermediate_size=8, vocab_size=10)


def test_computed_flops_count_the_layers_per_position_and_the_head_where_it_ran() -> None:
    # Per layer q, o (4x4 each), k, v (4x4 each), MLP 3 x 4x8: 160 weights, 2 FLOPs each = 320;
    # attention 2 * 4 * context 3 = 24: 344 per position. Head: 2 * 4 * 10 = 80 per position.
    # Forward + backward = 3 forwards, a live reference one more.
    assert computed_step_flops(CONFIG, computed_tokens=5, head_tokens=2, context=3, live_reference=False) == (5 * 344 + 2 * 80) * 3
    assert computed_step_flops(CONFIG, computed_tokens=5, head_tokens=2, context=3, live_reference=True) == (5 * 344 + 2 * 80) * 4
    # The effective figure runs the head on every token.
    assert step_flops(CONFIG, tokens=5, context=3, live_reference=False) == 5 * (344 + 80) * 3


def test_encoded_tokens_of_padded_and_shared_prompt_batches() -> None:
    pairs = [TokenizedPair(prompt=(1, 2, 3), chosen=(4, 5), rejected=(6,)), TokenizedPair(prompt=(1,), chosen=(7,), rejected=(8,))]
    # Padded rows: 5 and 2 (chosen), 4 and 2 (rejected) tokens, 4 rows of width 5; 5 completion tokens.
    padded = collate_pairs(pairs, pad_id=0)
    assert encoded_tokens(padded, chunked_logprobs=0) == EncodedTokens(20, 13, 13)
    assert encoded_tokens(padded, chunked_logprobs=256) == EncodedTokens(20, 13, 5)
    # Shared rows [prompt | chosen | rejected]: 6 and 3 tokens, 2 rows of width 6.
    shared = with_shared_prompts(collate_pairs(pairs, pad_id=0))
    assert encoded_tokens(shared, chunked_logprobs=256) == EncodedTokens(12, 9, 5)
