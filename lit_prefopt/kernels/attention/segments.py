"""The attention rule of shared-prompt rows, described once as per-token segment ids.

A row holds one or more pairs; each pair is a prompt followed by its completions
([prompt | chosen | rejected], or K completions of one prompt). Every token carries the pair it
belongs to, its kind (prompt, completion or padding), which completion of the pair it is in, and
its position (restarting per pair, and after the prompt for every completion but the first). One
rule over these ids says who may attend to whom:

    a query may attend a key at or before it in the same row, of the same pair, that is a prompt
    token or a token of the same completion, and (sliding-window layers) fewer than `window`
    positions back.

Each completion token thus sees exactly the context it has in its own padded row, so the
log-probs are those of the padded layout. Padding tokens share pair -1 and completion -1: they see
only earlier padding (so the softmax stays finite) and nothing real ever sees them.

Every backend is built from this description, so they cannot disagree: the dense mask evaluates
`mask_mod` over index grids, FlexAttention takes `mask_mod` itself, the varlen plan reads the ids.
The ids are linear in the row length, so the collate never builds anything L x L. Pair ids are
batch-global, which is what packing several pairs per row needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

PROMPT, COMPLETION, PADDING = 0, 1, -1
"""Values of `SegmentIds.kind`."""

MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


@dataclass
class SegmentIds:
    """Per token of [B, L] rows: pair, kind, completion index and position (all long tensors).

    `pair`: batch-global pair index (-1 on padding). `kind`: PROMPT, COMPLETION or PADDING.
    `completion`: which completion of its pair the token is in (0 chosen, 1 rejected, ...; -1 on
    prompt and padding). `positions`: the position ids the model embeds.
    """

    pair: Tensor
    kind: Tensor
    completion: Tensor
    positions: Tensor

    @classmethod
    def padded(cls, attention_mask: Tensor) -> "SegmentIds":
        """Right-padded rows of one sequence each (row r is pair r, a single completion)."""
        real = attention_mask.bool()
        rows = torch.arange(real.shape[0], device=real.device)[:, None].expand_as(real)
        return cls(
            pair=torch.where(real, rows, PADDING),
            kind=torch.where(real, COMPLETION, PADDING),
            completion=torch.where(real, 0, -1),
            positions=(real.long().cumsum(dim=1) - 1).clamp(min=0),
        )

    @property
    def shape(self) -> torch.Size:
        return self.pair.shape

    @property
    def num_tokens(self) -> int:
        """Tokens the model actually encodes (a shared prompt once), for FLOP accounting."""
        return int((self.kind != PADDING).sum().item())

    def mask_mod(self, window: int | None = None) -> MaskMod:
        """The attention rule as a FlexAttention mask function: (batch, head, query, key) -> may attend.

        Indices may be scalars (FlexAttention) or broadcastable tensors (`dense`).
        """
        pair, kind, completion, positions = self.pair, self.kind, self.completion, self.positions

        def may_attend(b: Tensor, h: Tensor, q: Tensor, k: Tensor) -> Tensor:
            allowed = (k <= q) & (pair[b, q] == pair[b, k])
            allowed = allowed & ((kind[b, k] == PROMPT) | (completion[b, k] == completion[b, q]))
            if window is not None:
                allowed = allowed & (positions[b, q] - positions[b, k] < window)
            return allowed

        return may_attend

    def dense(self, window: int | None = None) -> Tensor:
        """The rule as a [B, 1, L, L] bool mask (True = may attend), for SDPA and eager attention."""
        rows, length = self.shape
        device = self.pair.device
        b = torch.arange(rows, device=device)[:, None, None, None]
        q = torch.arange(length, device=device)[None, None, :, None]
        k = torch.arange(length, device=device)[None, None, None, :]
        return self.mask_mod(window)(b, torch.zeros((), dtype=torch.long, device=device), q, k)
