"""The physical limit: achieved model FLOP/s against this machine's measured matmul FLOP/s.

Model FLOPs count the useful work of a step (non-padding tokens only): 2 FLOPs per weight per
token forward (every matmul weight including the LM head, not the embedding lookup) plus
causal attention's scores and weighted sum, and backward costs twice the forward. A live
reference adds one forward. Padding, recomputation and duplicated prompts are not useful work,
so a system that avoids them can exceed a padded system's fraction at the same speed.
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


def forward_flops_per_token(config: PretrainedConfig, context: float) -> float:
    """Forward FLOPs of one token in a Llama at mean causal context `context` tokens."""
    d, layers = config.hidden_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (d // config.num_attention_heads)
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * config.intermediate_size
    weights = layers * per_layer + d * config.vocab_size
    attention = layers * 2 * d * context  # QK^T and AV, each 2*d per visible key, half visible
    return 2 * weights + attention


def step_flops(config: PretrainedConfig, tokens: int, context: float, live_reference: bool) -> float:
    """Training FLOPs for `tokens` non-padding tokens: forward + backward (2x), plus a reference."""
    per_token = forward_flops_per_token(config, context)
    return tokens * per_token * (3 + (1 if live_reference else 0))
