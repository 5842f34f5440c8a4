"""Checkpointed layers keep their attention kernel's result; the backward's recomputation reuses it.

Activation checkpointing runs each checkpointed layer's forward twice: once in the forward, and
again in the backward to rebuild what autograd needs. Of that recomputation the attention kernel
is the one op whose result is both small to keep (its output, one hidden state per token, and its
log-sum-exp, one float per token and head) and costly to make again (the L x L scores). So each
checkpointed call gets two contexts (torch.utils.checkpoint's `context_fn`): during the forward,
SDPA's CPU FlashAttention kernel runs and its output and log-sum-exp are kept; during the
recomputation the kept ones are returned and the kernel does not run. The backward is the
kernel's own backward from the same tensors SDPA's autograd saves, so gradients are bitwise those
of plain checkpointing (tests/test_activation_checkpointing.py).

Only a call torch itself would send to that kernel is taken (`torch._fused_sdp_choice` picks
FlashAttention, on CPU, with grad, no dropout); every other SDPA call (CUDA, the math fallback,
grouped-query heads, autocast's mixed dtypes that SDPA casts itself) runs unchanged and is
recomputed as before. The contexts are
`TorchFunctionMode`s: they see the layer's torch-function calls (a few dozen per layer), not every
aten op as the dispatch mode of torch's selective checkpointing does, which cost more than it
saved on CPU (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend
from torch.overrides import TorchFunctionMode

_FLASH_CPU = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_FLASH_CPU_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def kept_attention_contexts() -> tuple[TorchFunctionMode, TorchFunctionMode]:
    """The (forward, recomputation) contexts of one checkpointed call, sharing its kept results."""
    kept: deque[tuple[Tensor, Tensor]] = deque()
    return _KeepAttention(kept, replay=False), _KeepAttention(kept, replay=True)


class _KeepAttention(TorchFunctionMode):
    """Runs the CPU FlashAttention calls of one checkpointed call: keeping their results
    (forward) or handing the kept ones back in call order (recomputation)."""

    def __init__(self, kept: deque[tuple[Tensor, Tensor]], replay: bool) -> None:
        super().__init__()
        self.kept, self.replay = kept, replay

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            call = _flash_cpu_call(*args, **kwargs)
            if call is not None:
                return _KeptFlashAttention.apply(self.kept, self.replay, *call)
        return func(*args, **kwargs)


def _flash_cpu_call(
    query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0,
    is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, bool, float | None] | None:
    """The kernel's arguments when SDPA would run this call on CPU FlashAttention with grad, else None."""
    if query.device.type != "cpu" or dropout_p or enable_gqa or not torch.is_grad_enabled():
        return None
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        return None  # SDPA converts a bool mask first; callers here pass the additive one
    choice = torch._fused_sdp_choice(query, key, value, attn_mask, dropout_p, is_causal, scale=scale)
    if choice != SDPBackend.FLASH_ATTENTION.value:
        return None
    return query, key, value, attn_mask, is_causal, scale


class _KeptFlashAttention(torch.autograd.Function):
    """SDPA's CPU FlashAttention with the forward's result kept for (or taken from) `kept`."""

    @staticmethod
    def forward(ctx: Any, kept: deque, replay: bool, query: Tensor, key: Tensor, value: Tensor,
                mask: Tensor | None, is_causal: bool, scale: float | None) -> Tensor:
        if replay:
            out, logsumexp = kept.popleft()
        else:
            out, logsumexp = _FLASH_CPU(query, key, value, 0.0, is_causal, attn_mask=mask, scale=scale)
            kept.append((out.detach(), logsumexp))
        ctx.save_for_backward(query, key, value, out, logsumexp, mask)
        ctx.is_causal, ctx.scale = is_causal, scale
        return out.detach() if replay else out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        query, key, value, out, logsumexp, mask = ctx.saved_tensors
        grads = _FLASH_CPU_BACKWARD(grad, query, key, value, out, logsumexp, 0.0, ctx.is_causal, attn_mask=mask, scale=ctx.scale)
        return None, None, *grads, None, None, None
