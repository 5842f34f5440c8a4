"""The shared-prompt layout of the GPU check's attention timing: lit_prefopt's own segment ids.

Rows are laid out [prompt | chosen | rejected] by the library's `data.share_prompt` collate
(`share_prompts`), so the backends timed here are built from the same description training uses
(lit_prefopt.kernels.attention): the dense mask, the flex `BlockMask` and the varlen plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lit_prefopt.data.shared_prefix import share_prompts
from lit_prefopt.kernels.attention.segments import SegmentIds


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


def segment_ids(layout: Layout, device: torch.device) -> SegmentIds:
    """The segment ids the `data.share_prompt` collate gives `layout.rows` pairs of these lengths."""
    p, c, r = layout.prompt, layout.chosen, layout.rejected
    width = p + max(c, r)
    prompt = torch.arange(1, p + 1)
    chosen = torch.cat([prompt, torch.arange(p + 1, p + c + 1)])
    rejected = torch.cat([prompt, torch.arange(p + c + 1, p + c + r + 1)])
    ids = torch.zeros(2 * layout.rows, width, dtype=torch.long)
    ids[: layout.rows, : p + c] = chosen
    ids[layout.rows :, : p + r] = rejected
    attention = ids != 0
    segments = share_prompts(ids, attention, attention & (torch.arange(width) >= p)).segments
    return SegmentIds(*(t.to(device) for t in (segments.pair, segments.kind, segments.completion, segments.positions)))


def dense_mask(layout: Layout, device: torch.device) -> Tensor:
    """[B, 1, L, L] bool, the mask `sdpa` and `eager` get."""
    return segment_ids(layout, device).dense()
