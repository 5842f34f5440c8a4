"""Shared prompt prefix: one row per pair, [prompt | chosen | rejected], the prompt encoded once.

In HH-RLHF the prompt is ~70% of a pair's tokens and the padded layout encodes it twice.
Here both completions attend to the prompt and to themselves, never to each other, and each
completion's positions restart right after the prompt, so every completion token sees exactly the
context it has in its own padded row: the log-probs are those of the padded layout. The rows carry
that rule as per-token segment ids (lit_prefopt.kernels.attention.segments), linear in the row
length; the model's attention backend turns them into a mask, block mask or varlen plan when the
forward runs, on the model's device.

The layout is derived from an ordinary padded batch, so any collator can produce it: the shared
part of a pair is the common prefix of its chosen and rejected rows, up to the first scored token
(chat templates may leave unscored header tokens after it; those are shared too when they are
identical). The padded tensors stay in the batch (the contract is unchanged; counters and anything
else keep reading them); only the log-prob kernel uses the shared rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lit_prefopt.kernels.attention.segments import COMPLETION, PADDING, PROMPT, SegmentIds


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
    """B rows [prompt | chosen | rejected | pad]: their tokens, segment ids and scored tokens."""

    input_ids: Tensor  # [B, T]
    segments: SegmentIds  # pair p is row p; chosen is completion 0, rejected 1
    scored: ScoredTokens

    @property
    def num_tokens(self) -> int:
        """Tokens the model actually encodes (the prompt once), for FLOP accounting."""
        return self.segments.num_tokens


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
    pair = torch.full((pairs, width), PADDING, dtype=torch.long)
    kind = torch.full((pairs, width), PADDING, dtype=torch.long)
    completion = torch.full((pairs, width), -1, dtype=torch.long)
    positions = torch.zeros((pairs, width), dtype=torch.long)
    for p, row in enumerate(rows_ids):
        n, prefix, end = len(row), prefixes[p], chosen_ends[p]
        ids[p, :n] = row
        pair[p, :n] = p
        kind[p, :prefix] = PROMPT
        kind[p, prefix:n] = COMPLETION
        completion[p, prefix:end] = 0
        completion[p, end:n] = 1
        positions[p, :end] = torch.arange(end)
        positions[p, end:n] = torch.arange(prefix, prefix + n - end)
    device = input_ids.device
    segments = SegmentIds(pair.to(device), kind.to(device), completion.to(device), positions.to(device))
    return SharedPrefixRows(ids.to(device), segments, _shared_scored(completion_mask, prefixes, chosen_ends))


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
