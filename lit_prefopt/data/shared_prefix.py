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
    """Rows [prompt | chosen | rejected | ... | pad]: their tokens, segment ids and scored tokens."""

    input_ids: Tensor  # [rows, T]: B rows, or fewer when pairs are packed
    segments: SegmentIds  # pair p has pair id p; chosen is completion 0, rejected 1
    scored: ScoredTokens

    @property
    def num_tokens(self) -> int:
        """Tokens the model actually encodes (the prompt once), for FLOP accounting."""
        return self.segments.num_tokens


def share_prompts(
    input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor, pad_id: int = 0, pack_length: int | None = None
) -> SharedPrefixRows:
    """The shared-prefix layout of a padded 2B-row batch (rows [0,B) chosen, [B,2B) rejected).

    One pair per row, or with `pack_length` (`data.pack`) as many pairs per row as fit in that many
    tokens, back to back: each pair goes into the first row with room left, in batch order, and
    only the end of a row is padding. Pairs never attend to each other (their pair ids differ)
    and positions restart per pair, so the log-probs stay those of the padded layout.

    The packed batch never holds more tokens than the padded one, 2 x pairs x W for a padded
    width W, which is what `data.max_num_tokens` bounds. Rows of the full `pack_length` can (short
    pairs filling one long row beside long pairs in rows of their own); such a batch is packed
    into rows of at most 2 W instead: no pair's shared row is longer, so first fit then opens at
    most one row per pair.
    """
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
    row_lengths = [len(r) for r in rows_ids]
    if pack_length is not None and max(row_lengths) > pack_length:
        raise ValueError(f"a pair of {max(row_lengths)} shared-row tokens does not fit data.pack_length={pack_length}")
    places = _places(row_lengths, pack_length)
    rows, width = _extent(places, row_lengths)
    if rows * width > input_ids.numel():
        places = _places(row_lengths, min(pack_length, 2 * input_ids.shape[1]))
        rows, width = _extent(places, row_lengths)
    ids = torch.full((rows, width), pad_id, dtype=input_ids.dtype)
    pair = torch.full((rows, width), PADDING, dtype=torch.long)
    kind = torch.full((rows, width), PADDING, dtype=torch.long)
    completion = torch.full((rows, width), -1, dtype=torch.long)
    positions = torch.zeros((rows, width), dtype=torch.long)
    for p, (tokens, (row, start)) in enumerate(zip(rows_ids, places)):
        n, prefix, end = len(tokens), prefixes[p], chosen_ends[p]
        ids[row, start : start + n] = tokens
        pair[row, start : start + n] = p
        kind[row, start : start + prefix] = PROMPT
        kind[row, start + prefix : start + n] = COMPLETION
        completion[row, start + prefix : start + end] = 0
        completion[row, start + end : start + n] = 1
        positions[row, start : start + end] = torch.arange(end)
        positions[row, start + end : start + n] = torch.arange(prefix, prefix + n - end)
    device = input_ids.device
    segments = SegmentIds(pair.to(device), kind.to(device), completion.to(device), positions.to(device))
    return SharedPrefixRows(ids.to(device), segments, _shared_scored(completion_mask, prefixes, chosen_ends, places))


def _places(lengths: list[int], capacity: int | None) -> list[tuple[int, int]]:
    """(row, first column) of each pair's tokens: its own row, or first fit into rows of `capacity`."""
    if capacity is None:
        return [(p, 0) for p in range(len(lengths))]
    filled: list[int] = []
    places = []
    for n in lengths:
        row = next((r for r, used in enumerate(filled) if used + n <= capacity), len(filled))
        if row == len(filled):
            filled.append(0)
        places.append((row, filled[row]))
        filled[row] += n
    return places


def _extent(places: list[tuple[int, int]], row_lengths: list[int]) -> tuple[int, int]:
    """Rows and width of the laid-out batch: its rows are as wide as the fullest one."""
    return 1 + max(row for row, _ in places), max(offset + n for (_, offset), n in zip(places, row_lengths))


def _first_true(mask: Tensor) -> Tensor:
    """Column of each row's first True (the row's width when it has none)."""
    width = mask.shape[1]
    columns = torch.arange(width, device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), columns, width).min(dim=1).values


def _shared_scored(completion_mask: Tensor, prefixes: list[int], chosen_ends: list[int], places: list[tuple[int, int]]) -> ScoredTokens:
    """Map each scored (row, t) of the padded layout to its place in the shared rows.

    Within its pair's span, a chosen token keeps its column; a rejected token at column t moves
    right by the chosen completion's length; the rejected completion's first token is predicted
    from the prompt's last position, which does not move. The span starts at the pair's place.
    """
    pairs = completion_mask.shape[0] // 2
    rows, targets = completion_mask.nonzero(as_tuple=True)
    pair = rows % pairs
    is_rejected = rows >= pairs
    prefix = torch.tensor(prefixes, device=rows.device)[pair]
    shift = (torch.tensor(chosen_ends, device=rows.device)[pair] - prefix) * is_rejected
    shared_row, start = torch.tensor(places, device=rows.device)[pair].unbind(1)
    sources = targets - 1
    sources = torch.where(sources >= prefix, sources + shift, sources)
    return ScoredTokens(shared_row, sources + start, targets + shift + start, rows)
