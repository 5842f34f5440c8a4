"""The physical limit: achieved model FLOP/s against this machine's measured matmul FLOP/s.

Model FLOPs: 2 FLOPs per weight per token forward (every matmul weight including the LM head,
not the embedding lookup) plus causal attention's scores and weighted sum; backward costs twice
the forward, and a live reference adds one forward. Padding and recomputation never count.
Two figures come from them:
- effective (`step_flops`): the work of the padded layout on the non-padding tokens, the prompt
  in both rows and the LM head on every token. Systems that share the prompt or skip the head on
  it do less than this, so their fraction can exceed 1: it measures speed, not utilisation.
- computed (`computed_step_flops`): the work the system actually did, from the positions it
  encoded (a shared prompt once) and those it ran the LM head on. This is the MFU.
"""

from __future__ import annotations

import time

import torch
from transformers import PretrainedConfig


def matmul_flops_per_s(
    sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 5, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> float:
    """The best matmul rate over a few square sizes: float32 on the CPU's threads by default, or
    e.g. bfloat16 on a GPU (the peak an MFU is quoted against there). GPU kernels run
    asynchronously, so the clock is read only after the device has finished."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        a @ b  # warm-up (and, on a GPU, kernel selection)
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _synchronize(device)
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - started))
    return best


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def body_flops_per_token(config: PretrainedConfig, context: float) -> float:
    """Forward FLOPs of one token through a Llama's layers (no LM head) at mean causal context `context` tokens."""
    d, layers = config.hidden_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (d // config.num_attention_heads)
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * config.intermediate_size
    attention = layers * 2 * d * context  # QK^T and AV, each 2*d per visible key, half visible
    return 2 * layers * per_layer + attention


def head_flops_per_token(config: PretrainedConfig) -> float:
    """Forward FLOPs of the LM head for one position."""
    return 2 * config.hidden_size * config.vocab_size


def forward_flops_per_token(config: PretrainedConfig, context: float) -> float:
    """Forward FLOPs of one token in a Llama at mean causal context `context` tokens, LM head included."""
    return body_flops_per_token(config, context) + head_flops_per_token(config)


def step_flops(config: PretrainedConfig, tokens: int, context: float, live_reference: bool) -> float:
    """Effective training FLOPs for `tokens` non-padding tokens of the padded layout: forward +
    backward (2x), plus a reference forward."""
    per_token = forward_flops_per_token(config, context)
    return tokens * per_token * _passes(live_reference)


def computed_step_flops(
    config: PretrainedConfig, computed_tokens: int, head_tokens: int, context: float, live_reference: bool
) -> float:
    """Training FLOPs actually computed: the layers over `computed_tokens` non-padding positions
    encoded, the LM head over `head_tokens` of them; forward + backward, plus a reference forward
    (which encodes the same batch the same way)."""
    forward = computed_tokens * body_flops_per_token(config, context) + head_tokens * head_flops_per_token(config)
    return forward * _passes(live_reference)


def _passes(live_reference: bool) -> int:
    """Forward-equivalents per step: forward, backward (twice a forward), and a reference forward."""
    return 3 + (1 if live_reference else 0)
