"""Attention backends for the shared-prompt layout, timed forward + backward, with peak memory.

Rows are laid out [prompt | chosen | rejected] (half prompt, a quarter each completion); the rule
is said once, as a mask function over per-token segment kinds (`shared_prompt_rule`): causal, and a
completion never sees the other completion. Every backend is built from that description and
starts from the same q/k/v in the projections' [B, L, H, D] layout (grouped-query heads, as in
Llama-3-8B: 32 query and 8 key/value heads of 128):

- `dense_sdpa`: the [B, 1, L, L] boolean mask, K/V repeated to every query head as transformers
  does whenever SDPA gets a mask (today's `data.share_prompt` path on a GPU);
- `flex`: `flex_attention` with a `BlockMask` from the same rule (compiled; compile time apart);
- `varlen`: queries in order, one segment [prompt | chosen] and one segment rejected whose keys
  are gathered as prompt ++ rejected, causal aligned bottom-right, through
  `torch.nn.attention.varlen` or else flash-attn's varlen function;
- `padded_flash`: the plain padded layout of the same pairs (2 rows per pair, both with the
  prompt, 1.5x the tokens), SDPA with `is_causal` and no mask, which is the flash kernel.

Every output is compared with `dense_sdpa`'s, mapped to the same token order, so a wrong index or
mask shows as a difference rather than as a fast time. A backend this machine lacks is reported
as skipped with the reason; one that fails is reported with its error.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.data.shared_prefix import share_prompts

PROMPT, CHOSEN, REJECTED = 0, 1, 2
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2}


class Unavailable(Exception):
    """This backend cannot run here (the message says why); reported as skipped."""


@dataclass(frozen=True)
class Layout:
    """`rows` rows of [prompt | chosen | rejected] tokens and the attention heads."""

    rows: int
    prompt: int
    chosen: int
    rejected: int
    query_heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128

    @classmethod
    def of_length(cls, rows: int, length: int, **heads: int) -> "Layout":
        quarter = length // 4
        return cls(rows, length - 2 * quarter, quarter, quarter, **heads)

    @property
    def length(self) -> int:
        return self.prompt + self.chosen + self.rejected


def segment_kinds(layout: Layout, device: torch.device) -> Tensor:
    """[B, L]: the segment kind of every token of every row."""
    kinds = [PROMPT] * layout.prompt + [CHOSEN] * layout.chosen + [REJECTED] * layout.rejected
    return torch.tensor(kinds, device=device).expand(layout.rows, -1).contiguous()


def shared_prompt_rule(kinds: Tensor) -> Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]:
    """The attention rule as a flex `mask_mod` (batch, head, query, key -> may attend); it also
    broadcasts over index grids, which gives the dense mask."""

    def mask_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return (kv <= q) & ((kinds[b, kv] == PROMPT) | (kinds[b, kv] == kinds[b, q]))

    return mask_mod


def dense_mask(layout: Layout, device: torch.device) -> Tensor:
    """[B, 1, L, L] bool from the rule, evaluated on the full grid."""
    index = torch.arange(layout.length, device=device)
    rows = torch.arange(layout.rows, device=device)[:, None, None, None]
    rule = shared_prompt_rule(segment_kinds(layout, device))
    return rule(rows, 0, index[None, None, :, None], index[None, None, None, :])


def library_mask_matches(layout: Layout) -> bool:
    """The rule here is the one lit_prefopt's `data.share_prompt` collate builds (one row checked)."""
    p, c, r = layout.prompt, layout.chosen, layout.rejected
    width = p + max(c, r)
    ids = torch.zeros(2, width, dtype=torch.long)
    ids[0, : p + c] = torch.cat([torch.arange(1, p + 1), torch.arange(p + 1, p + c + 1)])
    ids[1, : p + r] = torch.cat([torch.arange(1, p + 1), torch.arange(p + c + 1, p + c + r + 1)])
    attention = ids != 0
    completion = attention & (torch.arange(width) >= p)
    library = share_prompts(ids, attention, completion).attention_mask[0, 0]
    return bool(torch.equal(library, dense_mask(Layout(1, p, c, r), torch.device("cpu"))[0, 0]))


def _repeat_kv(x: Tensor, groups: int) -> Tensor:
    return x.repeat_interleave(groups, dim=1)


def dense_sdpa(layout: Layout, device: torch.device) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    mask = dense_mask(layout, device)
    groups = layout.query_heads // layout.kv_heads

    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q, _repeat_kv(k, groups), _repeat_kv(v, groups), attn_mask=mask)
        return out.transpose(1, 2)

    return attend


_compiled_flex: Callable | None = None


def flex(layout: Layout, device: torch.device) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    global _compiled_flex
    if device.type != "cuda":
        raise Unavailable(f"flex_attention has no backward on {device.type} in torch {torch.__version__} "
                          "(training needs CUDA)")
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError as error:
        raise Unavailable(f"torch {torch.__version__} has no flex_attention: {error}") from None
    rule = shared_prompt_rule(segment_kinds(layout, device))
    block_mask = create_block_mask(rule, layout.rows, None, layout.length, layout.length, device=device)
    _compiled_flex = _compiled_flex or torch.compile(flex_attention, dynamic=False)

    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        return _compiled_flex(q, k, v, block_mask=block_mask, enable_gqa=True).transpose(1, 2)

    return attend


def varlen_kernel(device: torch.device) -> tuple[str, Callable[..., Tensor]]:
    """torch's varlen attention when this build has it, else flash-attn's, else Unavailable."""
    if device.type != "cuda":
        raise Unavailable(f"varlen attention runs on CUDA only (not on {device.type})")
    try:
        from torch.nn.attention.varlen import varlen_attn

        return "torch.nn.attention.varlen", lambda q, k, v, cq, ck, mq, mk: varlen_attn(
            q, k, v, cq, ck, mq, mk, window_size=(-1, 0), enable_gqa=True)
    except ImportError:
        pass
    try:
        from flash_attn import flash_attn_varlen_func

        return "flash_attn", lambda q, k, v, cq, ck, mq, mk: flash_attn_varlen_func(
            q, k, v, cq, ck, mq, mk, causal=True)
    except ImportError:
        raise Unavailable(f"torch {torch.__version__} has no torch.nn.attention.varlen "
                          "and flash-attn is not installed") from None


@dataclass(frozen=True)
class VarlenSegments:
    """The varlen layout of the rows flattened to [B * L] tokens: queries stay in order, in two
    segments per row ([prompt | chosen], then rejected); each segment's keys are the tokens at
    `key_index` between `cu_k[i]` and `cu_k[i + 1]` (prompt ++ rejected for the rejected one), and
    causality is aligned bottom-right (a segment's last query sees all its keys)."""

    key_index: Tensor
    cu_q: Tensor
    cu_k: Tensor
    max_q: int
    max_k: int

    @classmethod
    def of(cls, layout: Layout, device: torch.device) -> "VarlenSegments":
        p, c, r, length = layout.prompt, layout.chosen, layout.rejected, layout.length
        keys, q_lengths, k_lengths = [], [], []
        for row in range(layout.rows):
            start = row * length
            keys += [torch.arange(start, start + p + c),  # [prompt | chosen]
                     torch.arange(start, start + p), torch.arange(start + p + c, start + length)]  # prompt ++ rejected
            q_lengths += [p + c, r]
            k_lengths += [p + c, p + r]
        cu_q = F.pad(torch.tensor(q_lengths).cumsum(0), (1, 0)).to(device, torch.int32)
        cu_k = F.pad(torch.tensor(k_lengths).cumsum(0), (1, 0)).to(device, torch.int32)
        return cls(torch.cat(keys).to(device), cu_q, cu_k, max(q_lengths), max(k_lengths))


def varlen(layout: Layout, device: torch.device) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    _, kernel = varlen_kernel(device)
    segments = VarlenSegments.of(layout, device)

    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        flat = [x.reshape(-1, *x.shape[2:]) for x in (q, k, v)]
        keys, values = (x.index_select(0, segments.key_index) for x in flat[1:])
        out = kernel(flat[0], keys, values, segments.cu_q, segments.cu_k, segments.max_q, segments.max_k)
        return out.view(q.shape)

    return attend


def padded_flash(layout: Layout, device: torch.device) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
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


BACKENDS: dict[str, Callable[[Layout, torch.device], Callable[[Tensor, Tensor, Tensor], Tensor]]] = {
    "dense_sdpa": dense_sdpa,
    "flex": flex,
    "varlen": varlen,
    "padded_flash": padded_flash,
}


def time_backends(layouts: list[Layout], device: torch.device, dtype: torch.dtype, repeats: int) -> dict:
    """Every backend at every layout: ms per forward+backward, peak memory, difference from dense."""
    results = []
    for layout in layouts:
        generator = torch.Generator(device=device).manual_seed(0)
        shape = (layout.rows, layout.length)
        q = torch.randn(*shape, layout.query_heads, layout.head_dim, device=device, dtype=dtype, generator=generator)
        k, v = (torch.randn(*shape, layout.kv_heads, layout.head_dim, device=device, dtype=dtype, generator=generator)
                for _ in range(2))
        reference = None
        for name, build in BACKENDS.items():
            result = {"backend": name, **layout.__dict__, "length": layout.length,
                      "dtype": str(dtype).removeprefix("torch.")}
            try:
                started = time.perf_counter()
                attend = build(layout, device)
                output, timing = _timed(attend, q, k, v, device, repeats)
                result.update(status="ok", setup_s=time.perf_counter() - started - timing["total_s"], **timing)
                reference = output if name == "dense_sdpa" else reference
                if reference is not None:
                    result["max_abs_diff_vs_dense"] = float((output.float() - reference.float()).abs().max())
                    result["matches_dense"] = result["max_abs_diff_vs_dense"] <= TOLERANCE[dtype]
            except Unavailable as reason:
                result.update(status="skipped", reason=str(reason))
            except Exception as error:  # a broken backend is a finding to report, not a reason to stop
                result.update(status="failed", error=f"{type(error).__name__}: {error}",
                              traceback=traceback.format_exc()[-2000:])
            if name == "varlen" and result["status"] == "ok":
                result["kernel"] = varlen_kernel(device)[0]
            results.append(result)
            _free(device)
    return {"results": results, "rule_matches_library": library_mask_matches(layouts[0]),
            "passed": all(r["status"] != "failed" and r.get("matches_dense", True) for r in results)}


def _timed(attend: Callable, q: Tensor, k: Tensor, v: Tensor, device: torch.device,
           repeats: int) -> tuple[Tensor, dict]:
    """The first output, then ms per call after that warm-up (which also compiles), and the peak
    memory of the calls above what was allocated before them (the inputs)."""
    started = time.perf_counter()
    first = _forward_backward(attend, q, k, v)
    first_call_s = time.perf_counter() - started
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    clock = time.perf_counter()
    for _ in range(repeats):
        _forward_backward(attend, q, k, v)
    ms = (time.perf_counter() - clock) / repeats * 1000
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    return first, {"ms_fwd_bwd": ms, "first_call_s": first_call_s, "peak_mib": peak,
                   "total_s": time.perf_counter() - started}


def _forward_backward(attend: Callable, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """One call with gradients into fresh leaves (freed on return); waits for the device."""
    inputs = [x.detach().requires_grad_() for x in (q, k, v)]
    output = attend(*inputs)
    output.backward(torch.ones_like(output))
    _sync(q.device)
    return output.detach()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
