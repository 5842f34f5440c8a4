"""Variable-length attention (`model.attn_implementation=varlen`): no mask at all, no padding.

The segment ids become a plan for a varlen kernel (torch.nn.attention.varlen, the FlashAttention
kernels behind SDPA): every real token is a query, in order; one query segment per completion.
The first completion of a pair continues its prompt (queries prompt ++ completion, keys the same);
every later one attends the prompt's keys gathered in front of its own (queries: the completion;
keys: prompt ++ completion). Causality is aligned bottom-right, so the completion's first query
sees the whole prompt, and keys are consecutive positions, so the kernel's sliding window is the
padded row's window. Cumulative lengths delimit the segments. Nothing is L x L, the FlashAttention
kernel runs with grouped-query heads as they are (no K/V repeat), and padding costs nothing.

The kernel has no CPU implementation; `attend_in_segments` takes it as an argument so the plan
(indices, cumulative lengths, window) is checked on CPU against a per-segment reference.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lit_prefopt.kernels.attention.segments import PADDING, PROMPT, SegmentIds

NAME = "varlen"
"""The `model.attn_implementation` value (registered with transformers' attention interface)."""


@dataclass
class VarlenPlan:
    """Where each segment's queries and keys are in the flattened [B * L] tokens.

    `query_index` lists every real token in order; `cu_seq_q[s]:cu_seq_q[s + 1]` of it are segment
    s's queries. `key_index` lists the keys segment by segment (a later completion's prompt
    repeated in front of it), delimited by `cu_seq_k`. `max_q`/`max_k`: longest segment.
    """

    query_index: Tensor
    cu_seq_q: Tensor
    key_index: Tensor
    cu_seq_k: Tensor
    max_q: int
    max_k: int


def varlen_plan(segments: SegmentIds) -> VarlenPlan:
    """The plan of rows laid out as the segment ids describe (prompt first, each segment contiguous)."""
    pair, kind, completion = (t.reshape(-1) for t in (segments.pair, segments.kind, segments.completion))
    query_index = (kind != PADDING).nonzero().squeeze(1)
    q_pair, q_kind, q_completion = pair[query_index], kind[query_index], completion[query_index]
    # A segment starts where (pair, completion) changes, except from a prompt into its first completion.
    changed = (q_pair[1:] != q_pair[:-1]) | (q_completion[1:] != q_completion[:-1]) | (query_index[1:] != query_index[:-1] + 1)
    continues_prompt = (q_pair[1:] == q_pair[:-1]) & (q_kind[:-1] == PROMPT) & (query_index[1:] == query_index[:-1] + 1)
    starts = torch.cat([query_index.new_zeros(1), (changed & ~continues_prompt).nonzero().squeeze(1) + 1])
    query_lengths = torch.diff(starts, append=starts.new_tensor([query_index.numel()]))

    prompt_tokens = (kind == PROMPT).nonzero().squeeze(1)
    pairs = int(pair.max().item()) + 1 if pair.numel() else 0
    prompt_length = torch.bincount(pair[prompt_tokens], minlength=pairs)
    prompt_start = torch.full((pairs,), -1, dtype=torch.long, device=pair.device)
    prompt_start = prompt_start.scatter_reduce(0, pair[prompt_tokens], prompt_tokens, "amin", include_self=False)
    segment_pair = q_pair[starts]
    # Segments that begin with their prompt hold it already; later completions get it gathered.
    gathered = torch.where(q_kind[starts] == PROMPT, 0, prompt_length[segment_pair])
    key_lengths = gathered + query_lengths

    segment_of_key = torch.repeat_interleave(torch.arange(starts.numel(), device=pair.device), key_lengths)
    cu_seq_k = _cumulative(key_lengths)
    offset = torch.arange(segment_of_key.numel(), device=pair.device) - cu_seq_k[segment_of_key].long()
    from_prompt = offset < gathered[segment_of_key]
    key_index = torch.where(
        from_prompt,
        prompt_start[segment_pair][segment_of_key] + offset,
        query_index[starts][segment_of_key] + offset - gathered[segment_of_key],
    )
    return VarlenPlan(
        query_index=query_index,
        cu_seq_q=_cumulative(query_lengths),
        key_index=key_index,
        cu_seq_k=cu_seq_k,
        max_q=int(query_lengths.max().item()),
        max_k=int(key_lengths.max().item()),
    )


def attend_in_segments(
    query: Tensor, key: Tensor, value: Tensor, plan: VarlenPlan, scale: float | None, window: int | None, kernel: Callable[..., Tensor]
) -> Tensor:
    """Attention of [B, H, L, D] states through `kernel` (varlen_attn's signature); [B, L, Hq, D] out.

    Padding queries get zeros (nothing reads them).
    """
    rows, heads, length, dim = query.shape
    queries = query.transpose(1, 2).reshape(rows * length, heads, dim).index_select(0, plan.query_index)
    keys = key.transpose(1, 2).reshape(-1, key.shape[1], dim).index_select(0, plan.key_index)
    values = value.transpose(1, 2).reshape(-1, value.shape[1], dim).index_select(0, plan.key_index)
    grouped = {"enable_gqa": heads != key.shape[1]} if _asks_for_enable_gqa(kernel) else {}
    out = kernel(
        queries, keys, values, plan.cu_seq_q, plan.cu_seq_k, plan.max_q, plan.max_k,
        scale=scale, window_size=(window - 1, 0) if window else (-1, 0), **grouped,
    )
    return query.new_zeros(rows * length, heads, dim).index_copy(0, plan.query_index, out).view(rows, length, heads, dim)


@functools.cache
def torch_varlen_kernel() -> Callable[..., Tensor] | None:
    """torch's `varlen_attn` in the form used here, else None (looked up once: every layer's
    attention call asks).

    From torch 2.11 it takes `window_size` (causal, aligned bottom-right, with an optional sliding
    window); torch 2.10's first version takes `is_causal` and no window, and older ones have none.
    """
    if importlib.util.find_spec("torch.nn.attention.varlen") is None:
        return None
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn if "window_size" in inspect.signature(varlen_attn).parameters else None


@functools.cache
def _asks_for_enable_gqa(kernel: Callable[..., Tensor]) -> bool:
    """Whether the kernel takes `enable_gqa`: torch 2.13's varlen_attn refuses fewer K/V heads
    without it; torch 2.11's varlen_attn (and flash-attn's function) has no such argument
    and takes them as they are, as its FlashAttention kernel does."""
    return "enable_gqa" in inspect.signature(kernel).parameters


def varlen_attention_forward(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    sliding_window: int | None = None,
    varlen_plan: VarlenPlan | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers' attention-function signature; the plan comes in the forward's kwargs.

    Without a plan (the plain padded path, generation) the rows themselves are the segments: by
    their 2D padding mask, or whole rows when there is none (a query block at the end of its keys,
    as with a KV cache).
    """
    if dropout:
        raise ValueError("model.attn_implementation=varlen has no attention dropout: set the model's attention_dropout to 0")
    half = _kernel_dtype(query)
    kernel = torch_varlen_kernel()
    if kernel is None:
        raise ValueError(f"model.attn_implementation=varlen needs torch 2.11 or later (this is {torch.__version__})")
    plan = varlen_plan if varlen_plan is not None else _rows_plan(attention_mask, query, key)
    dtype = query.dtype
    query, key, value = query.to(half), key.to(half), value.to(half)
    return attend_in_segments(query, key, value, plan, scaling, sliding_window, kernel).to(dtype), None


def register() -> None:
    """Make `varlen` an attention implementation transformers loads and dispatches to.

    Its mask function is FlashAttention's (a 2D padding mask or None), so nothing L x L is built.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

    AttentionInterface.register(NAME, varlen_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, flash_attention_mask)


def _rows_plan(attention_mask: Tensor | None, query: Tensor, key: Tensor) -> VarlenPlan:
    rows, query_length, key_length, device = query.shape[0], query.shape[2], key.shape[2], query.device
    if attention_mask is not None:
        if query_length != key_length:
            raise NotImplementedError("model.attn_implementation=varlen: padded rows with a KV cache are not supported")
        return varlen_plan(SegmentIds.padded(attention_mask))
    steps = torch.arange(rows + 1, dtype=torch.int32, device=device)
    return VarlenPlan(
        query_index=torch.arange(rows * query_length, device=device),
        cu_seq_q=steps * query_length,
        key_index=torch.arange(rows * key_length, device=device),
        cu_seq_k=steps * key_length,
        max_q=query_length,
        max_k=key_length,
    )


def _kernel_dtype(query: Tensor) -> torch.dtype:
    """FlashAttention kernels take bfloat16/float16: float32 states (rotary embeddings promote them
    under mixed precision) run in the autocast dtype, as transformers' flash path does."""
    if query.dtype in (torch.bfloat16, torch.float16):
        return query.dtype
    if torch.is_autocast_enabled(query.device.type):
        return torch.get_autocast_dtype(query.device.type)
    raise ValueError(
        "model.attn_implementation=varlen runs FlashAttention kernels, which take bfloat16 or float16: set "
        "model.dtype=bfloat16 or trainer.precision=bf16-mixed (or use model.attn_implementation=sdpa for float32)"
    )


def _cumulative(lengths: Tensor) -> Tensor:
    return torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
