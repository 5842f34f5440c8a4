"""The GPU check's attention layouts on a CPU: every backend it times must compute the same
attention as the dense shared-prompt mask, or its timing would be of the wrong thing.

varlen and flex cannot train on a CPU, so their constructions are checked here without their
kernels: the varlen segments through SDPA run segment by segment (bottom-right causal, what the
varlen kernels do), and the flex rule through `flex_attention`'s forward under `no_grad`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmarks.gpu.attention_backends import dense_sdpa, padded_flash
from benchmarks.gpu.attention_layouts import (Layout, VarlenSegments, dense_mask, library_mask_matches, segment_kinds,
                                              shared_prompt_rule)

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
    assert library_mask_matches(LAYOUT)


def test_varlen_segments_give_the_dense_attention() -> None:
    q, k, v = _inputs()
    segments = VarlenSegments.of(LAYOUT, CPU)
    flat_q, flat_k, flat_v = (x.reshape(-1, *x.shape[2:]) for x in (q, k, v))
    keys, values = flat_k[segments.key_index], flat_v[segments.key_index]
    outputs = []
    for i in range(len(segments.cu_q) - 1):
        qs = flat_q[segments.cu_q[i] : segments.cu_q[i + 1]].transpose(0, 1)
        ks, vs = (x[segments.cu_k[i] : segments.cu_k[i + 1]].transpose(0, 1) for x in (keys, values))
        offset = ks.shape[1] - qs.shape[1]
        causal = torch.arange(ks.shape[1])[None, :] <= torch.arange(qs.shape[1])[:, None] + offset
        outputs.append(F.scaled_dot_product_attention(qs, ks, vs, attn_mask=causal, enable_gqa=True).transpose(0, 1))
    assert segments.max_q == LAYOUT.prompt + LAYOUT.chosen and segments.cu_k[-1] == len(segments.key_index)
    torch.testing.assert_close(torch.cat(outputs).view(q.shape), dense_sdpa(LAYOUT, CPU)(q, k, v))


def test_padded_rows_map_back_to_the_dense_attention() -> None:
    q, k, v = _inputs()
    torch.testing.assert_close(padded_flash(LAYOUT, CPU)(q, k, v), dense_sdpa(LAYOUT, CPU)(q, k, v))


@pytest.mark.slow  # flex_attention builds its kernels on first use (seconds on a CPU)
def test_flex_block_mask_gives_the_dense_attention() -> None:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    q, k, v = _inputs()
    rule = shared_prompt_rule(segment_kinds(LAYOUT, CPU))
    block_mask = create_block_mask(rule, LAYOUT.rows, None, LAYOUT.length, LAYOUT.length, device="cpu")
    with torch.no_grad():
        out = flex_attention(*(x.transpose(1, 2) for x in (q, k, v)), block_mask=block_mask, enable_gqa=True)
    torch.testing.assert_close(out.transpose(1, 2), dense_sdpa(LAYOUT, CPU)(q, k, v))
