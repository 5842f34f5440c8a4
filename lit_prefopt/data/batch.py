"""The tensors one training step consumes: chosen and rejected of B pairs, stacked.

Rows [0, B) are the chosen sequences and rows [B, 2B) the rejected ones of the same pairs, so the
policy runs one forward over both and the step splits the result (torchtune's concatenated
forward). The batch is a dataclass of tensors so Lightning moves it to the device as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from lit_prefopt.data.shared_prefix import SharedPrefixRows

# Every data counter a batch can carry, in the order ranks reduce them. Declared once so that
# every data-parallel rank all-reduces the same values whatever its own batches held (a rank
# that truncated nothing still reduces a 0): a per-rank key set made the reduction's length
# differ across ranks, which crashes gloo and can hang NCCL. `padding_batches` counts the
# zero-weight batches that even out ranks; it is not a property of the data.
DATA_COUNTERS = ("truncated", "dropped", "skipped", "padding_batches")


@dataclass
class PreferenceBatch:
    """B preference pairs as 2B right-padded rows.

    `completion_mask[r, t]` is True when token `input_ids[r, t]` is a scored completion token
    (it is predicted by the logits at position t-1, so column 0 is never scored). Prompt tokens
    and padding are False. `pair_weights` is 1 for real pairs and 0 for padding pairs that only
    keep data-parallel ranks in step; every mean over pairs is weighted by it.
    `reference_chosen`/`reference_rejected` hold precomputed summed reference log-probs when the
    data carried them (or a cache supplied them), else None.
    `shared_prefix`, when set (`data.share_prompt`), is the same pairs as one row each with the
    prompt encoded once (several pairs per row with `data.pack`), their attention rule as segment
    ids; the log-prob kernel then uses it instead of the padded rows.
    `counts` carries per-batch deltas of data counters (names from `DATA_COUNTERS`) from the
    workers that made the batch, so the module can log run totals.
    """

    input_ids: Tensor
    attention_mask: Tensor
    completion_mask: Tensor
    pair_weights: Tensor
    reference_chosen: Tensor | None = None
    reference_rejected: Tensor | None = None
    ids: list[str] = field(default_factory=list)
    shared_prefix: SharedPrefixRows | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.counts) - set(DATA_COUNTERS)
        if unknown:
            raise ValueError(f"undeclared data counters {sorted(unknown)}: add them to DATA_COUNTERS")

    @property
    def num_pairs(self) -> int:
        return self.input_ids.shape[0] // 2

    @property
    def num_real_pairs(self) -> int:
        return int(self.pair_weights.sum().item())

    def num_tokens(self) -> int:
        """Non-padding tokens (prompt + completion) of the real pairs, for throughput."""
        weights = torch.cat([self.pair_weights, self.pair_weights])
        return int((self.attention_mask.sum(dim=1) * weights).sum().item())
