"""Which attention backend runs the shared-prompt rule, chosen by `model.attn_implementation`.

The backend is the model's transformers attention implementation (one config key, the one that
already chose it; `HFCheckpoint` loads the model with it):

| `model.attn_implementation` | shared-prompt rows get                                      | where             |
|-----------------------------|-------------------------------------------------------------|-------------------|
| `sdpa` (default), `eager`   | a dense [B, 1, L, L] mask (additive: float32 for SDPA on CPU, bool for SDPA on CUDA; the model's dtype for eager) | CPU and CUDA |
| `flex_attention`            | a FlexAttention `BlockMask` from the rule's mask function      | CUDA; CPU no_grad |
| `varlen`                    | a varlen plan (no mask, no padding)                            | CUDA              |

`flash_attention_2` and the like take no per-token rule: they run the plain padded path only
(`data.share_prompt=false`). Sliding-window layers (Mistral, Qwen2 `use_sliding_window`, models
that mix full and sliding layers) get their window in every backend.

`check_implementation(name)` refuses, when the model is configured, a backend this machine cannot
run; `attention_inputs(model, segments)` builds, when the forward runs and on the ids' device
(the batch's, i.e. the model's), the forward kwargs for the model's backend. Benchmarks select a
backend by loading the model with that `attn_implementation` and call `sequence_logprobs`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lit_prefopt.kernels.attention import varlen
from lit_prefopt.kernels.attention.segments import SegmentIds

DENSE = ("sdpa", "eager")
FLEX = "flex_attention"
SHARED_PROMPT_BACKENDS = (*DENSE, FLEX, varlen.NAME)


def check_implementation(name: str) -> None:
    """Refuse an attention implementation this machine lacks, naming the alternative; register `varlen`."""
    if name == varlen.NAME:
        if varlen.torch_varlen_kernel() is None or not torch.cuda.is_available():
            raise ValueError(
                "model.attn_implementation=varlen needs CUDA and torch.nn.attention.varlen (torch 2.11 or later), "
                f"which this machine lacks (torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}): "
                "use model.attn_implementation=sdpa"
            )
        varlen.register()
    elif name == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ValueError(
            "model.attn_implementation=flash_attention_2 needs the flash-attn package, which is not installed: "
            "use model.attn_implementation=varlen (torch's own FlashAttention varlen kernel, CUDA) or sdpa"
        )


def attention_inputs(model: nn.Module, segments: SegmentIds) -> dict[str, Any]:
    """`attention_mask`, `position_ids` (and the varlen plan) for `model`'s forward over these rows."""
    implementation = implementation_of(model)
    check_usable(implementation, segments.pair.device)
    if implementation not in SHARED_PROMPT_BACKENDS:
        raise ValueError(
            f"data.share_prompt=true cannot run on model.attn_implementation={implementation} (it takes no per-token "
            f"attention rule): use one of {', '.join(SHARED_PROMPT_BACKENDS)}, or set data.share_prompt=false"
        )
    if implementation == varlen.NAME:
        return dict(attention_mask=None, position_ids=segments.positions, varlen_plan=varlen.varlen_plan(segments))
    if implementation == FLEX:
        from lit_prefopt.kernels.attention.flex import block_mask

        return dict(attention_mask=_per_layer_type(model, lambda window: block_mask(segments, window)), position_ids=segments.positions)
    dtype = model.dtype
    build = (lambda window: _sdpa_mask(segments.dense(window))) if implementation == "sdpa" else (lambda window: _additive(segments.dense(window), dtype))
    return dict(attention_mask=_per_layer_type(model, build), position_ids=segments.positions)


def check_usable(implementation: str, device: torch.device) -> None:
    """Refuse a forward the backend cannot run here, before transformers crashes on it."""
    if implementation == FLEX and device.type == "cpu" and torch.is_grad_enabled():
        raise ValueError(
            "model.attn_implementation=flex_attention cannot train on CPU (torch has no CPU backward for "
            "FlexAttention; it runs there only under no_grad): use model.attn_implementation=sdpa on CPU"
        )
    if implementation == varlen.NAME and device.type != "cuda":
        raise ValueError(f"model.attn_implementation=varlen runs on CUDA only, not {device.type}: use model.attn_implementation=sdpa")


def implementation_of(model: nn.Module) -> str:
    return getattr(model.config, "_attn_implementation", None) or "sdpa"


def _per_layer_type(model: nn.Module, build: Callable[[int | None], Any]) -> Any:
    """One mask, or one per layer type for models that mix full and sliding-window layers.

    A mask given to the forward replaces the model's own sliding window, so the window is applied
    in the rule (counted in the restarting positions: the padded row's distance).
    """
    window = getattr(model.config, "sliding_window", None)
    layer_types = set(getattr(model.config, "layer_types", None) or ["sliding_attention" if window else "full_attention"])
    if window is None or "sliding_attention" not in layer_types:
        return build(None)
    if layer_types == {"sliding_attention"}:
        return build(window)
    return {"full_attention": build(None), "sliding_attention": build(window)}


def _sdpa_mask(mask: Tensor) -> Tensor:
    """The mask SDPA is given: on CPU already in the additive form (0 / -inf, float32) that torch's
    SDPA would otherwise make from a bool mask on every call, i.e. in every layer, and again in
    each checkpointed layer's recomputation (two mask-sized temporaries and a `where` each time).
    The attention is bitwise the same, and every row keeps an allowed key (padding sees earlier
    padding), so no row is all -inf. CUDA's kernels take the bool mask as it is."""
    if mask.device.type != "cpu":
        return mask
    return _additive(mask, torch.float32, blocked=float("-inf"))


def _additive(mask: Tensor, dtype: torch.dtype, blocked: float | None = None) -> Tensor:
    """The mask as scores to add: 0 where allowed, `blocked` elsewhere (by default the dtype's
    minimum, which eager attention needs: booleans there would silently give wrong log-probs)."""
    fill = torch.finfo(dtype).min if blocked is None else blocked
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, fill)
