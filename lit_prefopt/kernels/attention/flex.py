"""FlexAttention: a `BlockMask` from the segment ids' mask function, never a dense L x L tensor.

`create_block_mask` evaluated eagerly materializes the whole [B, 1, L, L] mask before reducing it
to blocks; compiled, it computes the block summary without it, so it always runs compiled here
(compiled once per process; later row lengths recompile dynamically).
"""

from __future__ import annotations

from functools import cache
from typing import Callable

import torch
from torch.nn.attention.flex_attention import BlockMask, create_block_mask

from lit_prefopt.kernels.attention.segments import SegmentIds


def block_mask(segments: SegmentIds, window: int | None) -> BlockMask:
    """The shared-prompt rule (with the layer's sliding window) as a BlockMask on the ids' device."""
    rows, length = segments.shape
    return _compiled_create_block_mask()(segments.mask_mod(window), rows, None, length, length, device=segments.pair.device)


@cache
def _compiled_create_block_mask() -> Callable[..., BlockMask]:
    return torch.compile(create_block_mask)
