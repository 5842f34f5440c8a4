"""Log-probs of chosen tokens through the LM head, a chunk of tokens at a time.

With a 128k vocabulary, float32 logits of a 2-pair, 2k-token batch are ~4 GB, and autograd
keeps them (and their softmax) for backward. Here only the hidden states of scored positions
are kept; each chunk's logits are made, reduced to one log-prob per token and dropped, then
made again in backward. Peak extra memory is one chunk of logits, at the price of a second LM
head matmul in backward (the same trade as activation checkpointing, for the head alone).

A chunk is C x V float32 logits (125 MiB at 256 tokens and a 128k vocabulary), so each chunk has
exactly one such buffer: the log-sum-exp and the softmax are computed in it, in place, instead of
in a second tensor of its size as `logsumexp` and `softmax` would allocate. The forward keeps each
token's log-sum-exp (4 bytes a token), so the backward's softmax is `exp(logits - lse)` without
reducing over the vocabulary again.

When the softmax of every scored token is small (at most `KEEP_SOFTMAX_BYTES`, e.g. up to 2,048
tokens of an 8k vocabulary), the forward keeps it instead and the backward skips the second head
matmul: a quarter of the head's matmuls, for memory no larger than that budget. It is then made in
one chunk, since all of it is kept anyway and larger matmuls run faster. Big vocabularies
and long batches (128k entries, thousands of tokens) always recompute.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

KEEP_SOFTMAX_BYTES = 64 * 2**20
"""The most float32 softmax (scored tokens x vocabulary x 4 bytes) kept from forward to backward."""


class ChunkedHeadLogprobs(torch.autograd.Function):
    """`log_softmax(hidden @ weight.T)[i, targets[i]]` for each row i, chunk by chunk.

    hidden: [M, d] (the positions that predict scored tokens), weight: [V, d] (the LM head),
    targets: [M]. Returns float32 [M]. The matmuls run in the compute dtype (autocast's under
    bf16-mixed, else the model's) and the softmax in float32, as the plain path does
    (docs/ARCHITECTURE.md#log-probs-and-loss-conventions). Operands are cast once per call, not
    per chunk, and the backward's matmuls run in the same dtype as the forward's, with the head's
    gradient summed over chunks in float32.
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, chunk_size: int) -> Tensor:
        dtype = compute_dtype(hidden)
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(out)
        keep = any(ctx.needs_input_grad[:2]) and 4 * hidden.shape[0] * weight.shape[0] <= KEEP_SOFTMAX_BYTES
        if keep:  # all of it is kept anyway: one chunk, the larger matmuls run faster
            chunk_size = max(1, hidden.shape[0])
        kept: list[Tensor] = []  # exp(logits - row max) and its row sums: the softmax, undivided
        with torch.autocast(hidden.device.type, enabled=False):
            cast_hidden, cast_weight = hidden.to(dtype), weight.to(dtype)
            for start in range(0, hidden.shape[0], chunk_size):
                end = start + chunk_size
                logits = (cast_hidden[start:end] @ cast_weight.T).float()
                picked = logits.gather(1, targets[start:end, None]).squeeze(1)
                sums = torch.empty_like(lse[start:end]) if keep else None
                lse[start:end] = logsumexp_(logits, exp_sums=sums)
                out[start:end] = picked - lse[start:end]
                if keep:
                    kept += [logits, sums]
        ctx.save_for_backward(hidden, weight, targets, lse, *kept)
        ctx.chunk_size = chunk_size
        ctx.dtype = dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        """d logp_i / d logits_i = onehot(target_i) - softmax(logits_i), one chunk at a time."""
        hidden, weight, targets, lse, *kept = ctx.saved_tensors
        want_hidden, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
        cast_weight = weight.to(ctx.dtype)
        for start in range(0, hidden.shape[0], ctx.chunk_size):
            end = start + ctx.chunk_size
            chunk = hidden[start:end].to(ctx.dtype)
            if kept:  # -g * softmax, made in the kept buffer (a second backward is refused by autograd's version check)
                exps, sums = kept
                grad_logits = exps.mul_((-grad_out / sums)[:, None])
            else:
                grad_logits = (chunk @ cast_weight.T).float()
                grad_logits.sub_(lse[start:end, None]).exp_()  # the softmax, in the logits' buffer
                grad_logits.mul_(-grad_out[start:end, None])
            rows = torch.arange(chunk.shape[0], device=chunk.device)
            grad_logits[rows, targets[start:end]] += grad_out[start:end]
            grad_logits = grad_logits.to(ctx.dtype)
            if want_hidden:
                grad_hidden[start:end] = grad_logits @ cast_weight
            if want_weight:
                _add_product(grad_weight, grad_logits.T, chunk)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None


def logsumexp_(logits: Tensor, exp_sums: Tensor | None = None) -> Tensor:
    """`logits.logsumexp(dim=1)` by the same steps (row max, exp of the shifted logits, sum, log),
    computed in `logits`' own storage, which it overwrites with exp(logits - row max): no second
    chunk-sized tensor. `exp_sums`, if given, receives the row sums (softmax = logits / sums)."""
    top = logits.amax(dim=1, keepdim=True)
    top.masked_fill_(top.abs() == float("inf"), 0.0)  # as logsumexp: rows of -inf stay -inf, not nan
    sums = logits.sub_(top).exp_().sum(dim=1)
    if exp_sums is not None:
        exp_sums.copy_(sums)
    return sums.log_().add_(top.squeeze(1))


def compute_dtype(hidden: Tensor) -> torch.dtype:
    """The dtype the LM head's matmul runs in: autocast's when it is on (bf16-mixed under DDP),
    else the hidden states' (the model's, or FSDP's bf16 `param_dtype`)."""
    device = hidden.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype


def _add_product(total: Tensor, left: Tensor, right: Tensor) -> None:
    """`total += left @ right` with a float32 `total`: one fused float32 addmm, or a bf16/fp16
    matmul (which accumulates in float32 inside) added to the float32 sum."""
    if left.dtype == total.dtype:
        total.addmm_(left, right)
    else:
        total.add_(left @ right)


def scored_logprobs(model: nn.Module, inputs: dict[str, Any], sources: tuple[Tensor, Tensor], targets: Tensor, chunk_size: int) -> Tensor:
    """Float32 log-probs [M] of `targets` predicted at the hidden positions `sources` (rows,
    columns), through the model's own forward with its LM head computing them chunk by chunk.

    The head's `forward` is swapped for the call rather than the head bypassed, so the decoder,
    the head and every hook around the model's forward run as usual: under FSDP2 the root
    unshards the head's weight for it and reduce-scatters its gradient after. A model whose
    `.logits` is not the head's result untouched (logit soft-capping or scaling after the head)
    is refused: the chunked head would skip that step.
    """
    head = model.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        raise ValueError("model.chunked_logprobs supports LM heads without bias (Llama, Qwen2, Mistral, ...); set it to 0")
    rows, columns = sources
    results: list[Tensor] = []

    def scored_head(hidden: Tensor) -> Tensor:
        results.append(ChunkedHeadLogprobs.apply(hidden[rows, columns], head.weight, targets, chunk_size))
        return results[-1]

    head.forward = scored_head
    try:
        logits = model(**inputs, use_cache=False).logits
    finally:
        del head.forward
    if len(results) != 1 or logits is not results[0]:
        raise ValueError(
            f"model.chunked_logprobs: {type(model).__name__} transforms its LM head's output (logit soft-capping "
            "or scaling), which the chunked head would skip; set model.chunked_logprobs=0"
        )
    return logits
