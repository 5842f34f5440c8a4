"""The plan table: what each line of a stream's files contributes to the batch plan, built once across ranks.

A batch plan (see `dataset.py`) depends on every pair's length after the over-length policy, on
which pairs that policy drops, and on which records are bad (a chat template may refuse one).
Those facts need the tokenizer, and every rank needs all of them to form the same plan. The
table holds them as one small integer per line of `iter_lines(files)` (the files in order, a
file-level problem such as an empty file counting as one line): the pair's length, DROPPED, or
BAD (its `file:line` message kept beside the table), and beside it the width of the pair's
shared-prompt row [prompt | chosen | rejected], which length grouping sorts by. Rank r of R
parses and tokenizes only lines `r, r + R, ...`; the owner's code is offset so that every other
rank's entry is 0, and one SUM all-reduce gives every rank the whole table. A bad record's message and any failure travel
in one gather before it, so every rank raises the same error after the same collectives: a rank
whose tokenizer crashes records the failure instead of leaving the others waiting.

The table is a compact numpy array, so dataloader workers receive it by pickling.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from lit_prefopt.data.admission import admit
from lit_prefopt.data.reader import read_lines
from lit_prefopt.data.records import BadRecord
from lit_prefopt.data.tokenize import PairTokenizer

log = logging.getLogger(__name__)

NOT_OWNED = 0  # an entry of another rank's share, before the all-reduce
DROPPED = 1  # the over-length policy drops the pair
BAD = 2  # a bad record: its message is in `PlanTable.problems`
LENGTH_BASE = 3  # a pair of `length` tokens per row is `LENGTH_BASE + length`


@dataclass
class PlanTable:
    """Per line of `iter_lines(files)`: DROPPED, BAD, or `LENGTH_BASE + length` of the admitted pair,
    and its shared-row width (0 for a line that is no pair)."""

    codes: np.ndarray
    widths: np.ndarray
    offsets: tuple[int, ...]  # the table index of each file's first line
    problems: dict[int, tuple[str, str]] = field(default_factory=dict)  # index -> (file:line, problem)

    def bad_record(self, index: int) -> BadRecord:
        return BadRecord(*self.problems[index])

    def first_bad_record(self) -> BadRecord | None:
        """The bad record that a stream reading the files in order would meet first."""
        return self.bad_record(min(self.problems)) if self.problems else None


@dataclass
class TableShare:
    """One rank's part of a table: codes and widths of the lines it owns (0 elsewhere), their problems, or its failure."""

    codes: np.ndarray
    widths: np.ndarray
    offsets: tuple[int, ...]
    problems: dict[int, tuple[str, str]]
    failure: str | None = None


def build_share(
    files: Sequence[Path], tokenizer: PairTokenizer, max_seq_len: int, truncation: str, rank: int, world_size: int
) -> TableShare:
    """Read every line of the files (bytes only), and parse and tokenize the lines this rank owns.

    Never raises for what one rank's data or tokenizer does: a failure is returned, so that the
    rank still reaches the collectives the other ranks are waiting in.
    """
    codes = array("i")  # 4 bytes a line while reading, like the table itself
    widths = array("i")
    offsets: list[int] = []
    problems: dict[int, tuple[str, str]] = {}
    try:
        for path in files:
            offsets.append(len(codes))
            for line in read_lines(path):
                index = len(codes)
                code, width = NOT_OWNED, 0
                if index % world_size == rank:
                    try:
                        pair = admit(line, tokenizer, max_seq_len, truncation)
                        if pair is None:
                            code = DROPPED
                        else:
                            code, width = LENGTH_BASE + pair.length, pair.shared_length
                    except BadRecord as error:
                        code, problems[index] = BAD, (error.where, error.problem)
                codes.append(code)
                widths.append(width)
    except Exception as error:  # noqa: BLE001 - reported on every rank after the collectives
        empty = np.zeros(0, np.int32)
        return TableShare(empty, empty, (), {}, f"rank {rank}: {type(error).__name__}: {error}")
    return TableShare(np.frombuffer(codes, np.int32).copy(), np.frombuffer(widths, np.int32).copy(),
                      tuple(offsets), problems)


def merge_shares(shares: Sequence[TableShare], key: str) -> PlanTable:
    """The table from every rank's share (what the collectives compute, done in one process)."""
    _check_shares([(len(s.codes), s.offsets, s.problems, s.failure) for s in shares], key)
    codes = np.sum([share.codes for share in shares], axis=0, dtype=np.int32)
    widths = np.sum([share.widths for share in shares], axis=0, dtype=np.int32)
    return _table(codes, widths, shares[0].offsets, [share.problems for share in shares])


def share_plan_table(
    files: Sequence[Path], key: str, tokenizer: PairTokenizer, max_seq_len: int, truncation: str, device: torch.device
) -> PlanTable:
    """The whole table on every rank of the default process group, each rank tokenizing 1/R of the lines.

    Every rank makes the same two collectives whatever happens, then raises the same error if any
    rank failed or read a different number of lines.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    start = time.perf_counter()
    share = build_share(files, tokenizer, max_seq_len, truncation, rank, world_size)
    log.info("%s: plan table share of rank %d (every %d-th of %d lines) tokenized in %.1f s",
             key, rank, world_size, len(share.codes), time.perf_counter() - start)
    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, (len(share.codes), share.offsets, share.problems, share.failure))
    _check_shares(gathered, key)
    columns = torch.from_numpy(np.stack([share.codes, share.widths])).to(device)
    dist.all_reduce(columns, op=dist.ReduceOp.SUM)
    codes, widths = columns.cpu().numpy()
    return _table(codes, widths, share.offsets, [problems for _, _, problems, _ in gathered])


def _check_shares(shares: Sequence[tuple], key: str) -> None:
    failures = [failure for *_, failure in shares if failure is not None]
    if failures:
        raise RuntimeError(f"{key}: building the data plan table failed on {'; '.join(failures)}")
    sizes = [size for size, *_ in shares]
    if len(set(sizes)) > 1:
        raise RuntimeError(
            f"{key}: the ranks read different numbers of lines from the same files ({sizes} by rank): "
            "every rank must see the same data files"
        )


def _table(codes: np.ndarray, widths: np.ndarray, offsets: tuple[int, ...],
           problems: Sequence[dict[int, tuple[str, str]]]) -> PlanTable:
    return PlanTable(codes, widths, offsets, {index: problem for share in problems for index, problem in share.items()})
