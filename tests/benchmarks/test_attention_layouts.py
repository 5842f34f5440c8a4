"""The GPU check's attention layouts on a CPU: every backend it times must compute the same
attention as the dense shared-prompt mask, or its timing would be of the wrong thing.

The layouts are lit_prefopt's own segment ids; varlen and flex cannot train on a CPU, so their
constructions are checked here without their kernels: the varlen plan through SDPA run segment by
segment (bottom-right causal, what the varlen kernels do), and the flex block mask through
`flex_attention`'s forward under `no_grad`.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.gpu.attention_backends import dense_sdpa, padded_flash
from benchmarks.gpu.attention_layouts import Layout, dense_mask, segment_ids
from lit_prefopt.kernels.attention.varlen import attend_in_segments, varlen_plan
from tests.test_attention_backends import per_segment_sdpa

LAYOUT = Layout(rows=2, prompt=7, chosen=4, rejected=6, query_heads=4, kv_heads=2, head_dim=8)
CPU = torch.device("cpu")


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    shape = (LAYOUT.rows, LAYOUT.length)
    return (torch.randn(*shape, LAYOUT.query_heads, 8, generator=generator),
            torch.randn(*shape, LAYOUT.kv_heads, 8, generator=generator),
            torch.randn(*shape, LAYOUT.kv_heads, 8, generator=generator))


def test_dense_mask_is_the_shared_prompt_rule() -> None:
    mask = dense_mask(LAYOUT, CPU)[0, 0]
    p, c = LAYOUT.prompt, LAYOUT.chosen
    assert mask[p + c :, p : p + c].sum() == 0  # rejected never sees chosen
    assert mask[p + c :, :p].all() and mask[p : p + c, :p].all()  # both see the whole prompt
    assert mask[p + c + 2, p + c : p + c + 3].tolist() == [True, True, True]  # causal within rejected
    assert not mask.triu(1).any()


def test_varlen_plan_gives_the_dense_attention() -> None:
    q, k, v = _inputs()
    plan = varlen_plan(segment_ids(LAYOUT, CPU))
    out = attend_in_segments(*(x.transpose(1, 2) for x in (q, k, v)), plan, None, None, per_segment_sdpa)
    assert plan.max_q == LAYOUT.prompt + LAYOUT.chosen and plan.cu_seq_k[-1] == len(plan.key_index)
    torch.testing.assert_close(out, dense_sdpa(LAYOUT, CPU)(q, k, v))


def test_padded_rows_map_back_to_the_dense_attention() -> None:
    q, k, v = _inputs()
    torch.testing.assert_close(padded_flash(LAYOUT, CPU)(q, k, v), dense_sdpa(LAYOUT, CPU)(q, k, v))


@pytest.mark.slow  # flex_attention builds its kernels on first use (seconds on a CPU)
def test_flex_block_mask_gives_the_dense_attention() -> None:
    from torch.nn.attention.flex_attention import flex_attention

    from lit_prefopt.kernels.attention.flex import block_mask as build_block_mask

    q, k, v = _inputs()
    block_mask = build_block_mask(segment_ids(LAYOUT, CPU), None)
    with torch.no_grad():
        out = flex_attention(*(x.transpose(1, 2) for x in (q, k, v)), block_mask=block_mask, enable_gqa=True)
    torch.testing.assert_close(out.transpose(1, 2), dense_sdpa(LAYOUT, CPU)(q, k, v))
