"""Tiny random checkpoints of the other layouts `model=qwen` and `model=mistral` load.

Built like a user's checkpoint directory (`save_pretrained` weights and tokenizer) so the tests
go through the same loading code. Each keeps the trait of its family that differs from the tiny
Llama: Qwen2 ties its embeddings and its tokenizer has no BOS; Mistral and Qwen2 (with
`use_sliding_window`) attend through a sliding window, here shorter than the test rows so that it
matters.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

SIZES = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128)
SLIDING_WINDOW = 8
LAYOUTS = {
    # Qwen2 with its first layer full and the second sliding (max_window_layers=1).
    "qwen": (Qwen2Config, Qwen2ForCausalLM, dict(tie_word_embeddings=True, use_sliding_window=True,
                                                 sliding_window=SLIDING_WINDOW, max_window_layers=1)),
    "mistral": (MistralConfig, MistralForCausalLM, dict(tie_word_embeddings=False, sliding_window=SLIDING_WINDOW)),
}


def save_tiny_layout(name: str, target: Path, tokenizer_dir: str, sliding: bool = True) -> Path:
    """A random `name` model with the tiny Llama's tokenizer (without BOS for Qwen), saved to `target`."""
    config_class, model_class, traits = LAYOUTS[name]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if name == "qwen":
        tokenizer.bos_token = None
        tokenizer._tokenizer.post_processor = None
    if not sliding:
        traits = {**traits, "sliding_window": None, "use_sliding_window": False}
    config = config_class(
        **SIZES,
        **traits,
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    model_class(config).save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target
