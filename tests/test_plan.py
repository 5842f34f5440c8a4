"""The memory plan's terms for composed configs, against counts derived by hand from the shapes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import LlamaConfig

from lit_prefopt.plan import count_parameters, plan_memory
from lit_prefopt.train import train

# The default tiny Llama: h=64, 2 layers, i=128, 4 heads of 16, 2 KV heads, vocabulary 1024, untied head.
H, INTER, LAYERS, VOCAB = 64, 128, 2, 1024
LAYER = 2 * H * H + 2 * H * 32 + 3 * H * INTER + 2 * H  # q, o; k, v (2 KV heads x 16); gate, up, down; 2 norms
ROOT = 2 * VOCAB * H + H  # embeddings, LM head, final norm
PARAMS = LAYERS * LAYER + ROOT
TOKENS = 2 * 8 * 1024  # 2 rows per pair x data.batch_size x data.max_seq_len


def test_tiny_model_on_one_cpu(compose) -> None:
    plan = plan_memory(compose())
    assert plan.parameter_count == PARAMS == 205_120
    assert (plan.world_size, plan.shard_over) == (1, 1)
    terms = plan.terms
    assert terms["parameters"] == terms["reference"] == terms["gradients"] == PARAMS * 4
    assert terms["optimizer"] == 2 * PARAMS * 4  # AdamW's two moments in float32
    assert terms["gathered"] == 0
    assert terms["activations"] == TOKENS * (LAYERS * (11 * H + 4 * INTER) + 3 * H) * 4
    # one float32 chunk of 256 tokens, the head's gradient, the kept softmax (16k tokens x 1k vocabulary: at its 64 MiB cap)
    assert terms["lm_head"] == 4 * 256 * VOCAB + 4 * VOCAB * H + min(4 * TOKENS * VOCAB, 64 * 2**20)
    assert plan.step_temporaries == 0  # fused AdamW
    assert terms["attention_masks"] == 4 * 8 * 2048**2  # shared prompt: 8 rows of 2 x 1024 tokens, additive float32 on CPU
    assert plan.total == 4 * PARAMS * 4 + terms["activations"] + terms["lm_head"] + terms["attention_masks"]


def test_sharding_divides_the_model_state(compose) -> None:
    fsdp = plan_memory(compose("strategy=fsdp", "trainer.devices=4")).terms
    assert fsdp["parameters"] == PARAMS * 4 // 4 and fsdp["optimizer"] == 2 * PARAMS * 4 // 4
    assert fsdp["gathered"] == (2 * LAYER + ROOT) * 4
    hsdp = plan_memory(compose("strategy=hsdp", "strategy.shard_size=2", "trainer.devices=4"))
    assert (hsdp.world_size, hsdp.shard_over) == (4, 2)
    assert hsdp.terms["parameters"] == PARAMS * 4 // 2
    ddp = plan_memory(compose("strategy=ddp", "trainer.devices=4")).terms
    assert ddp["parameters"] == PARAMS * 4 and ddp["gradients"] == 2 * PARAMS * 4  # plus DDP's buckets


def test_options_that_change_terms(compose) -> None:
    plan = plan_memory(compose("optimizer=sgd", "criterion=simpo", "model.gradient_checkpointing=true",
                               "data.share_prompt=false", "model.chunked_logprobs=0", "model.dtype=bfloat16"))
    terms = plan.terms
    assert terms["optimizer"] == 0 and plan.step_temporaries == 0  # SGD without momentum or decay
    loop = plan_memory(compose("optimizer.fused=false"))
    assert loop.step_temporaries == PARAMS * 4  # AdamW's per-tensor loop: sqrt of the second moment
    assert terms["reference"] == 0  # SimPO needs no reference
    assert terms["parameters"] == PARAMS * 2
    assert terms["activations"] == plan.activations_with_checkpointing == TOKENS * (
        (LAYERS - 1) * 3 * H // 2 + 11 * H + 4 * INTER + 3 * H) * 2  # the last layer is not checkpointed
    assert terms["lm_head"] == (2 + 8) * TOKENS * VOCAB  # whole logits without chunking
    assert terms["attention_masks"] == 16 * 1024**2  # padded: 16 rows of 1024 tokens


def test_plan_true_prints_and_trains_nothing(compose, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert train(compose("plan=true")) == {}
    printed = capsys.readouterr().out
    assert "Memory plan per device: 0.2M parameters" in printed and "peak" in printed
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.csv").exists()


def test_a_tied_head_counts_once() -> None:
    config = LlamaConfig(hidden_size=H, intermediate_size=INTER, num_hidden_layers=LAYERS, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=VOCAB, tie_word_embeddings=True)
    total, trainable, outside = count_parameters(config, SimpleNamespace(trust_remote_code=False, uses_lora=False))
    assert total == trainable == PARAMS - VOCAB * H  # the head is the embedding matrix
    assert outside == ROOT - VOCAB * H
