"""The attention backends the GPU check times, each built by lit_prefopt.kernels.attention from
the segment ids of `attention_layouts` (what training runs), and starting from the same q/k/v in
the projections' [B, L, H, D] layout (grouped-query heads):

- `dense_sdpa`: the [B, 1, L, L] boolean mask, K/V repeated to every query head as transformers
  does whenever SDPA gets a mask (today's `data.share_prompt` path on a GPU);
- `flex`: `flex_attention` with a `BlockMask` from the same rule (compiled; compile time apart);
- `varlen`: queries in order, one segment [prompt | chosen] and one segment rejected whose keys
  are gathered as prompt ++ rejected, causal aligned bottom-right, through
  `torch.nn.attention.varlen` or else flash-attn's varlen function;
- `padded_flash`: the plain padded layout of the same pairs (2 rows per pair, both with the
  prompt, 1.5x the tokens), SDPA with `is_causal` and no mask, which is the flash kernel.

Each returns its output in the shared rows' token order, so all can be compared with the dense
one. A backend this machine cannot run raises `Unavailable` with the reason before any work.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.gpu.attention_layouts import Layout, dense_mask, segment_ids
from lit_prefopt.kernels.attention.varlen import attend_in_segments, torch_varlen_kernel, varlen_plan

Attention = Callable[[Tensor, Tensor, Tensor], Tensor]


class Unavailable(Exception):
    """This backend cannot run here (the message says why); reported as skipped."""


def _repeat_kv(x: Tensor, groups: int) -> Tensor:
    return x.repeat_interleave(groups, dim=1)


def dense_sdpa(layout: Layout, device: torch.device) -> Attention:
    mask = dense_mask(layout, device)
    groups = layout.query_heads // layout.kv_heads

    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q, _repeat_kv(k, groups), _repeat_kv(v, groups), attn_mask=mask)
        return out.transpose(1, 2)

    return attend


def flex(layout: Layout, device: torch.device) -> Attention:
    if device.type != "cuda":
        raise Unavailable(f"flex_attention has no backward on {device.type} in torch {torch.__version__} "
                          "(training needs CUDA)")
    try:
        from lit_prefopt.kernels.attention.flex import block_mask as build_block_mask
    except ImportError as error:
        raise Unavailable(f"torch {torch.__version__} has no flex_attention: {error}") from None
    block_mask = build_block_mask(segment_ids(layout, device), None)
    attention = compiled_flex_attention()

    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        return attention(q, k, v, block_mask=block_mask, enable_gqa=True).transpose(1, 2)

    return attend


@functools.cache
def compiled_flex_attention() -> Callable:
    """flex_attention compiled once per process (eager flex materializes the scores, which is
    neither fast nor what a user would run); each new shape still compiles on its first call."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def varlen_kernel(device: torch.device) -> tuple[str, Callable[..., Tensor]]:
    """torch's varlen attention when this build has it, else flash-attn's, else Unavailable."""
    if device.type != "cuda":
        raise Unavailable(f"varlen attention runs on CUDA only (not on {device.type})")
    kernel = torch_varlen_kernel()
    if kernel is not None:
        return "torch.nn.attention.varlen", kernel
    try:
        from flash_attn import flash_attn_varlen_func

        return "flash_attn", lambda q, k, v, cq, ck, mq, mk, *, scale, window_size: flash_attn_varlen_func(
            q, k, v, cq, ck, mq, mk, softmax_scale=scale, causal=True, window_size=window_size)
    except ImportError:
        raise Unavailable(f"torch {torch.__version__} has no varlen_attn with window_size (torch 2.11 on) "
                          "and flash-attn is not installed") from None


def varlen(layout: Layout, device: torch.device) -> Attention:
    _, kernel = varlen_kernel(device)
    plan = varlen_plan(segment_ids(layout, device))

    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return attend_in_segments(*(x.transpose(1, 2) for x in (q, k, v)), plan, None, None, kernel)

    return attend


def padded_flash(layout: Layout, device: torch.device) -> Attention:
    """The padded layout: its rows are gathered from the shared rows inside the call (a copy, small
    next to the attention; the plain path's projections produce them directly), and the output is
    mapped back to the shared rows' token order for the comparison."""
    p, c, r = layout.prompt, layout.chosen, layout.rejected
    width = p + max(c, r)
    chosen = torch.arange(p + c)
    rejected = torch.cat([torch.arange(p), torch.arange(p + c, p + c + r)])
    gather = torch.stack([F.pad(chosen, (0, width - p - c)), F.pad(rejected, (0, width - p - r))]).to(device)
    # Shared-row token t is token `position[t]` of padded row `which[t]` (0 chosen, 1 rejected) of its pair.
    position = torch.cat([chosen, p + torch.arange(r)]).to(device)
    which = torch.cat([torch.zeros(p + c), torch.ones(r)]).long().to(device)

    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        rows = [x[:, gather].flatten(0, 1).transpose(1, 2) for x in (q, k, v)]
        out = F.scaled_dot_product_attention(*rows, is_causal=True, enable_gqa=True).transpose(1, 2)
        return out.reshape(layout.rows, 2, width, *out.shape[2:])[:, which, position]

    return attend


BACKENDS: dict[str, Callable[[Layout, torch.device], Attention]] = {
    "dense_sdpa": dense_sdpa,
    "flex": flex,
    "varlen": varlen,
    "padded_flash": padded_flash,
}
