"""Tokenized pairs to the `PreferenceBatch` the module consumes: chosen rows, then rejected rows."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.data.shared_prefix import share_prompts
from lit_prefopt.data.tokenize import TokenizedPair


def collate_pairs(
    pairs: Sequence[TokenizedPair],
    pad_id: int,
    weights: Sequence[float] | None = None,
    mask_source_tokens: bool = True,
    counts: dict[str, int] | None = None,
) -> PreferenceBatch:
    """Stack `prompt + chosen` rows then `prompt + rejected` rows, right-padded with `pad_id`.

    `completion_mask` marks the completion tokens (and, with `mask_source_tokens=False`, the
    prompt tokens after the first, which has nothing to be predicted from). Reference scores are
    kept when every pair has them; 0.0 is a score like any other. They cover the completion
    tokens only, so with `mask_source_tokens=False` they are not used.
    """
    rows = [pair.prompt + pair.chosen for pair in pairs] + [pair.prompt + pair.rejected for pair in pairs]
    prompt_lengths = [len(pair.prompt) for pair in pairs] * 2
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    completion_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for index, (row, prompt_length) in enumerate(zip(rows, prompt_lengths)):
        input_ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[index, : len(row)] = True
        completion_mask[index, prompt_length if mask_source_tokens else 1 : len(row)] = True
    scored = mask_source_tokens and all(pair.reference_chosen is not None for pair in pairs)
    return PreferenceBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        completion_mask=completion_mask,
        pair_weights=torch.tensor(list(weights) if weights is not None else [1.0] * len(pairs), dtype=torch.float32),
        reference_chosen=torch.tensor([pair.reference_chosen for pair in pairs], dtype=torch.float32) if scored else None,
        reference_rejected=torch.tensor([pair.reference_rejected for pair in pairs], dtype=torch.float32) if scored else None,
        ids=[pair.id or "" for pair in pairs],
        counts=dict(counts or {}),
    )


def with_shared_prompts(batch: PreferenceBatch, pack_length: int | None = None) -> PreferenceBatch:
    """The collate step of `data.share_prompt=true`: attach the shared layout to a padded batch
    (with `data.pack=true`, its pairs packed into rows of `pack_length` tokens)."""
    batch.shared_prefix = share_prompts(batch.input_ids, batch.attention_mask, batch.completion_mask, pack_length=pack_length)
    return batch
