"""The shared-prompt layout of the GPU check's attention timing, said once and derived per backend.

Rows are laid out [prompt | chosen | rejected]. The attention rule is a mask function over
per-token segment kinds (`shared_prompt_rule`): causal, and a completion never sees the other
completion. The dense mask evaluates it on the full grid, flex takes it as its `mask_mod`, and the
varlen segments and the padded rows are built from the same lengths; the tests hold every one of
them to the dense mask, and the dense mask to lit_prefopt's own `data.share_prompt` collate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.data.shared_prefix import share_prompts

PROMPT, CHOSEN, REJECTED = 0, 1, 2


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
    library = share_prompts(ids, attention, completion).segments.dense()[0, 0]
    return bool(torch.equal(library, dense_mask(Layout(1, p, c, r), torch.device("cpu"))[0, 0]))


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
