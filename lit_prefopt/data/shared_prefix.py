"""Shared prompt prefix: one row per pair, [prompt | chosen | rejected], the prompt encoded once.

In HH-RLHF the prompt is ~70% of a pair's tokens and the padded layout encodes it twice.
Here both completions attend to the prompt and to themselves, never to each other (a 4D
block mask), and each completion's positions restart right after the prompt, so every
completion token sees exactly the context it has in its own padded row: the log-probs are
those of the padded layout.

The layout is derived from an ordinary `PreferenceBatch`, so any collator can produce it: the
shared part of a pair is the common prefix of its chosen and rejected rows, up to the first
scored token (chat templates may leave unscored header tokens after it; those are shared too
when they are identical). The padded tensors stay in the batch (the contract is unchanged;
counters and anything else keep reading them); only the log-prob kernel uses the shared rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from lit_prefopt.data.batch import PreferenceBatch


@dataclass
class ScoredTokens:
    """Where each scored token is, flattened over the batch.

    Token i is `input_ids[rows[i], targets[i]]`, predicted by the hidden state at
    `(rows[i], sources[i])`, and belongs to sequence `sequences[i]` of the 2B-row contract
    (chosen of pair p is p, rejected is B + p).
    """

    rows: Tensor
    sources: Tensor
    targets: Tensor
    sequences: Tensor

    @classmethod
    def padded(cls, completion_mask: Tensor) -> "ScoredTokens":
        """The padded layout: row r's token t is predicted by position t-1 of the same row."""
        rows, targets = completion_mask.nonzero(as_tuple=True)
        return cls(rows, targets - 1, targets, rows)


@dataclass
class SharedPrefixRows:
    """B rows [prompt | chosen | rejected | pad] with their 4D mask and restarting positions."""

    input_ids: Tensor  # [B, T]
    attention_mask: Tensor  # [B, 1, T, T] bool, True = may attend
    position_ids: Tensor  # [B, T]
    scored: ScoredTokens

    @property
    def num_tokens(self) -> int:
        """Tokens the model actually encodes (the prompt once), for FLOP accounting."""
        return int(self.attention_mask.diagonal(dim1=2, dim2=3).sum().item())


def share_prompts(input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor, pad_id: int = 0) -> SharedPrefixRows:
    """The shared-prefix layout of a padded 2B-row batch (rows [0,B) chosen, [B,2B) rejected)."""
    pairs = input_ids.shape[0] // 2
    lengths = attention_mask.sum(dim=1).tolist()
    first_scored = _first_true(completion_mask).tolist()
    rows_ids, prefixes, chosen_ends = [], [], []
    for p in range(pairs):
        chosen = input_ids[p, : lengths[p]]
        rejected = input_ids[pairs + p, : lengths[pairs + p]]
        limit = min(first_scored[p], first_scored[pairs + p])
        same = (chosen[:limit] == rejected[:limit]).long().cumprod(0).sum().item()
        rows_ids.append(torch.cat([chosen, rejected[same:]]))
        prefixes.append(same)
        chosen_ends.append(lengths[p])
    width = max(len(r) for r in rows_ids)
    ids = torch.full((pairs, width), pad_id, dtype=input_ids.dtype)
    positions = torch.zeros((pairs, width), dtype=torch.long)
    mask = torch.zeros((pairs, 1, width, width), dtype=torch.bool)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    for p, row in enumerate(rows_ids):
        n, prefix, end = len(row), prefixes[p], chosen_ends[p]
        ids[p, :n] = row
        positions[p, :end] = torch.arange(end)
        positions[p, end:n] = torch.arange(prefix, prefix + n - end)
        block = causal[:n, :n].clone()
        block[end:n, prefix:end] = False  # rejected tokens never see the chosen completion
        mask[p, 0, :n, :n] = block
        mask[p, 0, n:, 0] = True  # padding queries attend somewhere, so softmax stays finite
    scored = _shared_scored(completion_mask, prefixes, chosen_ends)
    return SharedPrefixRows(ids.to(input_ids.device), mask.to(input_ids.device), positions.to(input_ids.device), scored)


def with_shared_prompts(batch: "PreferenceBatch") -> "PreferenceBatch":
    """The collate step of `data.share_prompt=true`: attach the shared layout to a padded batch."""
    batch.shared_prefix = share_prompts(batch.input_ids, batch.attention_mask, batch.completion_mask)
    return batch


def attention_mask_for(model: torch.nn.Module, mask: Tensor, position_ids: Tensor) -> Tensor | dict[str, Tensor]:
    """The block mask (bool, True = may attend) in the form `model`'s attention takes it.

    transformers passes a 4D mask to the attention function as it is: SDPA takes booleans, eager
    attention adds the mask to its scores, so it needs 0 / dtype-min floats (booleans there would
    silently give wrong log-probs). Flash and flex attention take no 4D mask at all.

    A 4D mask also replaces the model's own sliding window (Mistral, Qwen2 with
    `use_sliding_window`, ...), so the window is applied here: a token sees keys less than
    `sliding_window` positions back, counted in the restarting positions, which is the padded
    row's distance. Models that mix full and sliding layers get one mask per layer type (their
    forward takes that mapping).
    """
    implementation = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if implementation not in ("sdpa", "eager"):
        raise ValueError(
            f"data.share_prompt=true needs model.attn_implementation sdpa or eager (a 4D block mask), not "
            f"{implementation!r}: set data.share_prompt=false or change the attention implementation"
        )
    window = getattr(model.config, "sliding_window", None)
    layer_types = set(getattr(model.config, "layer_types", None) or ["sliding_attention" if window else "full_attention"])
    if window is None or "sliding_attention" not in layer_types:
        return _in_attention_form(model, implementation, mask)
    distance = position_ids[:, None, :, None] - position_ids[:, None, None, :]
    windowed = _in_attention_form(model, implementation, mask & (distance < window))
    if layer_types == {"sliding_attention"}:
        return windowed
    return {"full_attention": _in_attention_form(model, implementation, mask), "sliding_attention": windowed}


def _in_attention_form(model: torch.nn.Module, implementation: str, mask: Tensor) -> Tensor:
    if implementation == "sdpa":
        return mask
    dtype = model.dtype
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def _first_true(mask: Tensor) -> Tensor:
    """Column of each row's first True (the row's width when it has none)."""
    width = mask.shape[1]
    columns = torch.arange(width, device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), columns, width).min(dim=1).values


def _shared_scored(completion_mask: Tensor, prefixes: list[int], chosen_ends: list[int]) -> ScoredTokens:
    """Map each scored (row, t) of the padded layout to its place in the shared row.

    Chosen tokens keep their columns. A rejected token at column t moves right by the chosen
    completion's length; the rejected completion's first token is predicted from the prompt's
    last position, which does not move.
    """
    pairs = completion_mask.shape[0] // 2
    rows, targets = completion_mask.nonzero(as_tuple=True)
    pair = rows % pairs
    is_rejected = rows >= pairs
    prefix = torch.tensor(prefixes, device=rows.device)[pair]
    shift = (torch.tensor(chosen_ends, device=rows.device)[pair] - prefix) * is_rejected
    sources = targets - 1
    sources = torch.where(sources >= prefix, sources + shift, sources)
    return ScoredTokens(pair, sources, targets + shift, rows)
