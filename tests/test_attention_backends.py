"""The attention backends built from one segment-id description agree with each other.

The varlen kernel has no CPU implementation, so its plan (query order, gathered keys, cumulative
lengths, window) runs here through a per-segment SDPA that does what the kernel does: causal
attention aligned bottom-right, a left window of `window_size[0]` keys. The kernel itself is
checked on a GPU (`pytest -k cuda` where CUDA is present).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.nn.functional import scaled_dot_product_attention

from lit_prefopt.data.shared_prefix import share_prompts
from lit_prefopt.kernels.attention.backends import check_implementation, check_usable
from lit_prefopt.kernels.attention.segments import COMPLETION, PADDING, PROMPT, SegmentIds
from lit_prefopt.kernels.attention.varlen import (
    attend_in_segments,
    torch_varlen_kernel,
    varlen_attention_forward,
    varlen_plan,
)


def per_segment_sdpa(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, *, scale, window_size, enable_gqa):
    """What torch.nn.attention.varlen.varlen_attn computes, one segment at a time with SDPA."""
    outputs = []
    for s in range(cu_seq_q.numel() - 1):
        qs, ks, vs = q[cu_seq_q[s]:cu_seq_q[s + 1]], k[cu_seq_k[s]:cu_seq_k[s + 1]], v[cu_seq_k[s]:cu_seq_k[s + 1]]
        assert qs.shape[0] <= max_q and ks.shape[0] <= max_k
        last_key = torch.arange(qs.shape[0])[:, None] + ks.shape[0] - qs.shape[0]  # bottom-right causal
        keys = torch.arange(ks.shape[0])[None, :]
        allowed = keys <= last_key
        if window_size[0] >= 0:
            allowed &= keys >= last_key - window_size[0]
        out = scaled_dot_product_attention(qs.transpose(0, 1), ks.transpose(0, 1), vs.transpose(0, 1), attn_mask=allowed,
                                           scale=scale, enable_gqa=enable_gqa)
        outputs.append(out.transpose(0, 1))
    return torch.cat(outputs)


def _shared_rows(prompts: list[int], chosen: list[int], rejected: list[int], pack_length: int | None = None) -> SegmentIds:
    rows, scored = [], []
    for lengths in (chosen, rejected):
        for prompt, n in zip(prompts, lengths):
            rows.append(list(range(1, prompt + 1)) + [100 + len(rows)] * n)
            scored.append([False] * prompt + [True] * n)
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[True] * len(r) + [False] * (width - len(r)) for r in rows])
    completion = torch.tensor([s + [False] * (width - len(s)) for s in scored])
    return share_prompts(ids, mask, completion, pack_length=pack_length).segments


def _packed_row() -> SegmentIds:
    """One row packing two pairs and a prompt with three completions, then padding (hand-laid)."""
    layout = [(0, PROMPT, -1)] * 3 + [(0, COMPLETION, 0)] * 2 + [(0, COMPLETION, 1)] * 3  # pair 0
    layout += [(1, PROMPT, -1)] * 4 + [(1, COMPLETION, 0)] * 1 + [(1, COMPLETION, 1)] * 2 + [(1, COMPLETION, 2)] * 3
    layout += [(PADDING, PADDING, -1)] * 2
    positions = list(range(5)) + [3, 4, 5] + list(range(5)) + [4, 5] + [4, 5, 6] + [0, 0]
    pair, kind, completion = (torch.tensor([[entry[i] for entry in layout]]) for i in range(3))
    return SegmentIds(pair, kind, completion, torch.tensor([positions]))


def test_varlen_plan_of_one_pair_by_hand() -> None:
    """Prompt 3, chosen 2, rejected 2: queries in order, the rejected keys are prompt ++ rejected."""
    plan = varlen_plan(_shared_rows(prompts=[3], chosen=[2], rejected=[2]))
    assert plan.query_index.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert plan.cu_seq_q.tolist() == [0, 5, 7]
    assert plan.key_index.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 5, 6]
    assert plan.cu_seq_k.tolist() == [0, 5, 10]
    assert (plan.max_q, plan.max_k) == (5, 5)


def test_packed_row_rule_by_hand() -> None:
    """The rule on a packed row: pairs never see each other, completions see their prompt only."""
    mask = _packed_row().dense()[0, 0]
    assert mask[5:8, :3].all() and not mask[5:8, 3:5].any()  # pair 0's second completion: prompt, not the first
    assert not mask[8:, :8].any()  # pair 1 never sees pair 0
    assert mask[15:18, 8:12].all() and not mask[15:18, 12:15].any()  # third completion: its prompt only
    assert not mask[:18, 18:].any()  # nothing real sees padding
    plan = varlen_plan(_packed_row())
    assert plan.cu_seq_q.tolist() == [0, 5, 8, 13, 15, 18]
    assert plan.cu_seq_k.tolist() == [0, 5, 11, 16, 22, 29]


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("segments", [_shared_rows([6, 9, 3, 1], [4, 1, 7, 2], [2, 6, 5, 3]),
                                      _shared_rows([6, 9, 3, 1], [4, 1, 7, 2], [2, 6, 5, 3], pack_length=30), _packed_row()],
                         ids=["shared", "shared-packed", "three-completions"])
def test_varlen_plan_equals_the_dense_mask(segments: SegmentIds, window: int | None) -> None:
    """Attention outputs through the varlen plan equal SDPA under the dense mask at every real token."""
    rows, length = segments.shape
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(rows, 4, length, 8, generator=generator)
    key, value = torch.randn(2, rows, 2, length, 8, generator=generator)
    dense = scaled_dot_product_attention(query, key, value, attn_mask=segments.dense(window), scale=0.3, enable_gqa=True)
    varlen = attend_in_segments(query, key, value, varlen_plan(segments), 0.3, window, per_segment_sdpa)
    real = segments.kind != PADDING
    torch.testing.assert_close(varlen[real], dense.transpose(1, 2)[real], atol=1e-6, rtol=1e-5)
    assert not varlen[~real].any()


def per_segment_sdpa_without_gqa_argument(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, *, scale, window_size):
    """torch 2.10-2.12's varlen_attn signature: no `enable_gqa`; fewer K/V heads are taken as they are."""
    return per_segment_sdpa(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale, window_size=window_size,
                            enable_gqa=q.shape[1] != k.shape[1])


def test_varlen_kernels_without_an_enable_gqa_argument_get_none() -> None:
    """The GPU machine's torch (2.11) has a varlen_attn without `enable_gqa`: passing it would be a
    TypeError there, so only kernels that ask for it get it, and grouped heads still attend right."""
    segments = _shared_rows([6, 9], [4, 1], [2, 6])
    rows, length = segments.shape
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(rows, 4, length, 8, generator=generator)
    key, value = torch.randn(2, rows, 2, length, 8, generator=generator)
    dense = scaled_dot_product_attention(query, key, value, attn_mask=segments.dense(None), enable_gqa=True)
    varlen = attend_in_segments(query, key, value, varlen_plan(segments), None, None, per_segment_sdpa_without_gqa_argument)
    real = segments.kind != PADDING
    torch.testing.assert_close(varlen[real], dense.transpose(1, 2)[real], atol=1e-6, rtol=1e-5)


@pytest.mark.skipif(torch_varlen_kernel() is None, reason=f"torch {torch.__version__} has no varlen_attn with window_size")
def test_transformers_dispatches_varlen_to_the_kernel(tiny_llama) -> None:
    """Registered, `varlen` is a transformers attention implementation: a model loads with it and
    its attention layers run torch's varlen kernel (which has no CPU implementation, so here the
    call ends in NotImplementedError from the FlashAttention operator)."""
    from transformers import AutoModelForCausalLM
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from lit_prefopt.kernels.attention import varlen

    varlen.register()
    assert ALL_ATTENTION_FUNCTIONS["varlen"] is varlen.varlen_attention_forward
    model = AutoModelForCausalLM.from_pretrained(tiny_llama.path, attn_implementation="varlen", dtype=torch.bfloat16)
    segments = _shared_rows(prompts=[3], chosen=[2], rejected=[2])
    with pytest.raises(NotImplementedError, match="_flash_attention_forward"):
        model(input_ids=torch.ones(segments.shape, dtype=torch.long), position_ids=segments.positions,
              varlen_plan=varlen_plan(segments))


def test_unavailable_backends_are_refused_by_name() -> None:
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="model.attn_implementation=varlen needs CUDA .*use model.attn_implementation=sdpa"):
            check_implementation("varlen")
    with pytest.raises(ValueError, match="model.attn_implementation=flex_attention cannot train on CPU"):
        check_usable("flex_attention", torch.device("cpu"))
    with torch.no_grad():
        check_usable("flex_attention", torch.device("cpu"))  # evaluation runs
    with pytest.raises(ValueError, match="model.attn_implementation=varlen runs on CUDA only"):
        check_usable("varlen", torch.device("cpu"))
    states = torch.zeros(1, 2, 3, 4)
    with pytest.raises(ValueError, match="take bfloat16 or float16: set model.dtype=bfloat16 or trainer.precision=bf16-mixed"):
        varlen_attention_forward(torch.nn.Module(), states, states, states, None)


@pytest.mark.slow
def test_flex_attention_forward_equals_sdpa(tiny_llama, tmp_path) -> None:
    """FlexAttention (a BlockMask from the same ids) gives SDPA's log-probs under no_grad on CPU,
    for Llama and Qwen2 mixing full and sliding-window layers (rows longer than the window); with
    grad it is refused by name. In a subprocess: transformers' flex path can segfault instead of
    raising. (Each new mask compiles on CPU, hence one model per layout kind.)"""
    from tests.architectures import save_tiny_layout
    from tests.entry_process import REPO, entry_env

    directories = [tiny_llama.path, *(str(save_tiny_layout(name, tmp_path / name, tiny_llama.path)) for name in ("qwen",))]
    result = subprocess.run([sys.executable, "-m", "tests.flex_parity", *directories], cwd=REPO,
                            env=entry_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("max |flex - sdpa|") == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the varlen kernel (torch.nn.attention.varlen) runs on CUDA only")
@pytest.mark.parametrize("layout", ["llama", "qwen"])
def test_varlen_kernel_logprobs_equal_sdpa_on_cuda(tiny_llama, tmp_path, layout: str) -> None:
    """The real kernel in a bfloat16 model: shared-prompt rows and plain padded rows through
    `varlen` give SDPA's log-probs (bfloat16 noise apart) and the backward runs."""
    from lightning.pytorch.utilities import move_data_to_device

    from lit_prefopt.kernels.logprobs import sequence_logprobs
    from lit_prefopt.models.checkpoint import HFCheckpoint
    from tests.architectures import save_tiny_layout
    from tests.flex_parity import shared_batch

    directory = tiny_llama.path if layout == "llama" else str(save_tiny_layout(layout, tmp_path / layout, tiny_llama.path))
    device = torch.device("cuda")
    sdpa, varlen = (HFCheckpoint(path=directory, dtype="bfloat16", attn_implementation=name).load_policy().to(device)
                    for name in ("sdpa", "varlen"))
    batch = move_data_to_device(shared_batch(sdpa.config.vocab_size), device)
    expected, _ = sequence_logprobs(sdpa, batch, chunk_size=4)
    got, _ = sequence_logprobs(varlen, batch, chunk_size=4)
    got.sum().backward()
    torch.testing.assert_close(got.detach(), expected.detach(), atol=5e-2, rtol=2e-2)
    batch.shared_prefix = None
    plain, _ = sequence_logprobs(varlen, batch)
    torch.testing.assert_close(plain.detach(), expected.detach(), atol=5e-2, rtol=2e-2)


def test_sdpa_gets_an_additive_float_mask_on_cpu_equal_to_the_rule() -> None:
    """torch's CPU SDPA would convert a bool mask on every call; the mask is handed over converted,
    and attention through it is bitwise what the bool mask gives."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lit_prefopt.kernels.attention.backends import attention_inputs

    segments = _shared_rows([3, 5], [2, 4], [4, 1])
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, intermediate_size=32, vocab_size=50,
                                         attn_implementation="sdpa"))
    mask = attention_inputs(model, segments)["attention_mask"]
    rule = segments.dense()
    assert mask.dtype == torch.float32 and mask.shape == rule.shape
    assert torch.equal(mask == 0, rule) and torch.equal(mask == float("-inf"), ~rule)
    q, k, v = torch.randn(3, rule.shape[0], 2, rule.shape[-1], 8).unbind(0)
    assert torch.equal(scaled_dot_product_attention(q, k, v, attn_mask=mask),
                       scaled_dot_product_attention(q, k, v, attn_mask=rule))
