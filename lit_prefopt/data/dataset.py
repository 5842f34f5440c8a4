"""The training stream: read, shard, shuffle, tokenize, batch and collate, resumably.

How one epoch is cut up, and why:

1. Dataloader worker `w` of `W` takes lines `w, w + W, w + 2W, ...` of the epoch's line stream
   (the files in order, or the manifest's weighted draws). Every rank runs the same W workers
   over the same lines.
2. Each worker shuffles its lines in a bounded buffer seeded by (seed, epoch, w), admits them
   (parsed, tokenized and put through the over-length policy, or looked up in the plan table of
   item 5), and groups the pairs into batches: `batch_size` pairs (of similar length within
   pools of `bucket_pool` pairs when shuffled, consecutive in file order with `shuffle=false`)
   or a token budget; the batches of a pool come in an order seeded by (seed, epoch, w). This
   *batch plan* is a pure function of the data, the seed and the epoch, so it is identical on
   every rank, whatever drops, skips or lengths happen.
3. Rank `r` of `R` collates and yields batches `r, r + R, ...` of each worker's plan. So every
   pair of the epoch lands in exactly one batch of exactly one rank.
4. DDP evenness: a worker's plan of K batches gives each rank `ceil(K / R)` batches; a rank that
   owns one fewer yields a padding batch instead: a copy of one real pair with `pair_weights`
   0, so its loss and metrics count for nothing, but the forward and backward touch every
   parameter and the gradient all-reduce matches the other ranks'. Every rank therefore yields
   the same number of batches per epoch, and no collective can hang at the end of an epoch.
5. Tokenizing only a share: a plan needs every pair's length after the over-length policy, and
   whether the policy drops it or the record is bad (a chat template may refuse one). With more
   than one rank the data module builds a *plan table* first (`plan_table.py`, once per run in
   `setup`): rank r parses and tokenizes lines r, r + R, ... of the files, and one all-reduce
   gives every rank each line's length, DROPPED or BAD (a manifest's draws look up the line of
   their file). The plan is then formed from the raw
   lines and the table's lengths, identically on every rank without tokenizing, and a rank
   tokenizes a pair again only when it collates its batch. So each rank parses and tokenizes
   about 2/R of the epoch (its table share, then its batches), not all of it; every rank still
   reads every line's bytes (gzip and manifest inputs included). A bad record with
   `on_bad_record=error` stops every rank in `setup` with the same `file:line` message. In one
   process, or a stream built without a table, the plan tokenizes each pair once as it forms,
   and collation reuses those tokens. Either way every plan entry knows its `length` and its shared-row width
   (`shared_length`), which token budgets and length grouping sort by.
6. Resume: the state is (epoch, how many plan batches this worker has passed, how many it has
   yielded). `load_state_dict` followed by a new pass replays the epoch's plan up to that point
   without collating it, then continues with the next unseen batch. Replay re-reads the
   epoch's consumed part (exact, even with shuffle and bucketing buffers in flight, at the cost
   of that work once per resume; with a plan table it reads bytes only, without one the
   consumed pairs are parsed and tokenized again). The number of workers and ranks must be
   the same as when the state was saved.

Counts of skipped (bad), dropped (over-long) and truncated pairs travel as deltas in the
`counts` of the batch that the owning rank yields, so summing them over ranks and steps gives
run totals with nothing counted twice."""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info

from lit_prefopt.data.admission import admit
from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.data.batching import Item, budget_batches, fixed_batches, grouped_batches
from lit_prefopt.data.collate import collate_pairs
from lit_prefopt.data.plan_table import BAD, DROPPED, LENGTH_BASE, PlanTable
from lit_prefopt.data.reader import RawLine, iter_lines
from lit_prefopt.data.records import BadRecord, DataValidationError
from lit_prefopt.data.sources import DataSources
from lit_prefopt.data.tokenize import PairTokenizer, TokenizedPair

log = logging.getLogger(__name__)

# Records between checks of data.max_dropped_fraction within an epoch: enough for a fair estimate,
# soon enough that a run whose max_steps ends before its first epoch still stops.
DROPPED_CHECK_EVERY = 1000


@dataclass(frozen=True)
class StreamSettings:
    """How the stream batches and polices pairs (the `data.*` config values)."""

    batch_size: int | None = 8
    max_num_tokens: int | None = None
    max_seq_len: int = 1024
    truncation: str = "truncate"
    on_bad_record: str = "error"
    shuffle: bool = True
    shuffle_buffer: int = 10_000
    bucket_pool: int = 1_000
    group_by_length: bool = True
    # The layout the batches are encoded in, which decides the width grouping sorts by.
    share_prompt: bool = True
    seed: int = 0
    mask_source_tokens: bool = True
    max_dropped_fraction: float = 0.5
    # Validation: every pass reads epoch 0's manifest draws and token-budget batches, so successive
    # validation losses are measured on the same pairs.
    same_every_epoch: bool = False

    @property
    def groups_by_length(self) -> bool:
        """Whether fixed-size batches are made of pairs of similar length. Only a shuffled stream is
        grouped: `shuffle=false` asks for the files' order, so its batches are consecutive pairs."""
        return self.max_num_tokens is None and self.group_by_length and self.shuffle


@dataclass(frozen=True)
class TabledLine:
    """A line that the plan table admitted: its length is known, its tokens are made only by the
    rank that collates its batch (item 5 of the module docstring)."""

    line: RawLine
    length: int
    shared_length: int


# A plan's entry; both kinds have the `length` that token budgets (and any length grouping) need.
PlanEntry = TokenizedPair | TabledLine

# A line of the epoch: its index in the plan table (its position in `iter_lines(files)`) and the line.
IndexedLine = tuple[int, RawLine]


@dataclass
class _Plan:
    """One batch of a worker's epoch plan and the count deltas observed while forming it."""

    pairs: list[PlanEntry]
    counts: Counter


class PreferenceStream(IterableDataset):
    """Batches of preference pairs for one rank; see the module docstring for the epoch layout."""

    def __init__(
        self,
        sources: DataSources,
        tokenizer: PairTokenizer,
        settings: StreamSettings,
        rank: int = 0,
        world_size: int = 1,
        table: PlanTable | None = None,
    ) -> None:
        super().__init__()
        self.sources = sources
        self.tokenizer = tokenizer
        self.settings = settings
        self.rank = rank
        self.world_size = world_size
        self.table = table
        self.draws = sources.mixture.draws_per_epoch() if sources.mixture is not None else None
        self.epoch = 0
        self.position = 0
        self.yielded = 0
        self._resuming = False

    def state_dict(self) -> dict[str, Any]:
        worker, num_workers = _worker()
        return {
            "epoch": self.epoch,
            "position": self.position,
            "yielded": self.yielded,
            "worker": worker,
            "num_workers": num_workers,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        worker, num_workers = _worker()
        saved = (state["num_workers"], state["world_size"])
        if saved != (num_workers, self.world_size):
            workers = "0 or 1" if saved[0] == 1 else saved[0]  # no worker process: one stream, as one worker
            raise ValueError(
                f"the data stream was saved split over {saved[0]} loader stream(s) per rank x {saved[1]} ranks and "
                f"is resumed with {num_workers} x {self.world_size}: resume with data.num_workers={workers} "
                f"on {saved[1]} ranks"
            )
        # Lightning saves the loader state of rank 0 only and every rank loads it. Ranks yield
        # in lockstep (rank r owns plans r, r+R, ...), so the number of batches yielded is the
        # same on all of them and `yielded * world_size` is where every rank resumes; the
        # saved `position` is rank 0's own and would replay a batch on the other ranks.
        self.epoch, self.yielded = state["epoch"], state["yielded"]
        self.position = self.yielded * self.world_size
        self._resuming = True

    def __iter__(self) -> Iterator[PreferenceBatch]:
        if not self._resuming and (self.position or self.yielded):
            # The previous pass was abandoned mid-epoch (limit_train_batches, a sanity check):
            # the next pass is the next epoch.
            self._next_epoch()
        self._resuming = False
        worker, num_workers = _worker()
        totals: Counter = Counter()
        last: _Plan | None = None
        planned = 0
        for index, plan in enumerate(self._plans(worker, num_workers, totals)):
            planned, last = index + 1, plan
            if index < self.position:
                continue
            self.position = index + 1
            if index % self.world_size == self.rank:
                self.yielded += 1
                yield self._collate(plan.pairs, plan.counts)
        self._check_dropped(totals)
        owned = math.ceil(planned / self.world_size)
        while self.yielded < owned:
            self.yielded += 1
            yield self._collate(last.pairs[:1], Counter(padding_batches=1), weight=0.0)
        self._next_epoch()

    def _next_epoch(self) -> None:
        self.epoch, self.position, self.yielded = self.epoch + 1, 0, 0

    @property
    def _draw_epoch(self) -> int:
        """The epoch whose random draws (manifest lines, buckets, shuffle) this pass uses."""
        return 0 if self.settings.same_every_epoch else self.epoch

    def _plans(self, worker: int, num_workers: int, totals: Counter) -> Iterator[_Plan]:
        """The worker's batch plan for the epoch, each batch with the counts since the previous one.

        A plan is held back until the next one exists, so counts observed after the last batch
        was formed (drops at the very end) still ride on the last batch.
        """
        counts: Counter = Counter()
        pairs = self._pairs(worker, num_workers, counts, totals)
        settings = self.settings
        rng = random.Random(f"buckets/{settings.seed}/{self._draw_epoch}/{worker}")
        if settings.max_num_tokens is not None:
            batches = budget_batches(pairs, settings.max_num_tokens, settings.bucket_pool, rng)
        elif settings.groups_by_length:
            width = (lambda p: p.shared_length) if settings.share_prompt else (lambda p: p.length)
            batches = grouped_batches(pairs, settings.batch_size, settings.bucket_pool, rng, width)
        else:
            batches = fixed_batches(pairs, settings.batch_size)
        pending: _Plan | None = None
        for batch in batches:
            if pending is not None:
                yield pending
            # The pair generator keeps adding to `counts`: hand the batch a copy, then start over.
            pending = _Plan(batch, Counter(counts))
            counts.clear()
        if pending is not None:
            pending.counts.update(counts)
            yield pending

    def _pairs(self, worker: int, num_workers: int, counts: Counter, totals: Counter) -> Iterator[PlanEntry]:
        """The worker's share of the epoch's lines, shuffled, and admitted (through the plan table when
        there is one) as plan entries."""
        settings = self.settings
        lines = (line for draw, line in enumerate(self._lines()) if draw % num_workers == worker)
        if settings.shuffle:
            lines = shuffled(lines, settings.shuffle_buffer, random.Random(f"shuffle/{settings.seed}/{self._draw_epoch}/{worker}"))
        for index, line in lines:
            if totals["records"] and totals["records"] % DROPPED_CHECK_EVERY == 0:
                self._check_dropped(totals)
            totals["records"] += 1
            try:
                pair = self._admit(index, line)
            except BadRecord as error:
                if settings.on_bad_record == "error":
                    raise
                log.warning("skipping bad record %s", error)
                _count(counts, totals, "skipped")
                continue
            if pair is None:
                _count(counts, totals, "dropped")
                continue
            yield pair

    def _lines(self) -> Iterator[IndexedLine]:
        mixture = self.sources.mixture
        if mixture is None:
            return enumerate(iter_lines(self.sources.files))
        draws = mixture.lines(self.settings.seed, self._draw_epoch, self.draws)
        offsets = self.table.offsets if self.table is not None else (0,) * len(mixture.files)
        return ((offsets[file] + position, line) for file, position, line in draws)

    def _admit(self, index: int, line: RawLine) -> PlanEntry | None:
        """One line to a plan entry within `max_seq_len`, or None when the over-length policy drops it."""
        if self.table is None:
            return admit(line, self.tokenizer, self.settings.max_seq_len, self.settings.truncation)
        code = int(self.table.codes[index])
        if code == BAD:
            raise self.table.bad_record(index)
        if code == DROPPED:
            return None
        return TabledLine(line, code - LENGTH_BASE, int(self.table.widths[index]))

    def _tokenized(self, entry: PlanEntry) -> TokenizedPair:
        """The entry's tokens, made now for a line the plan table admitted (by the rank that collates it)."""
        if isinstance(entry, TokenizedPair):
            return entry
        pair = admit(entry.line, self.tokenizer, self.settings.max_seq_len, self.settings.truncation)
        if pair is None or pair.length != entry.length:
            raise RuntimeError(
                f"{entry.line.where}: the plan table has {entry.length} tokens for this pair but this rank made "
                f"{'none (dropped)' if pair is None else pair.length}: every rank must use the same tokenizer "
                "and the same files, unchanged during the run"
            )
        return pair

    def _collate(self, entries: list[PlanEntry], counts: Counter, weight: float = 1.0) -> PreferenceBatch:
        pairs = [self._tokenized(entry) for entry in entries]
        if weight:
            counts["truncated"] += sum(pair.truncated for pair in pairs)
        return collate_pairs(
            pairs,
            pad_id=self.tokenizer.pad,
            weights=[weight] * len(pairs),
            mask_source_tokens=self.settings.mask_source_tokens,
            counts={name: value for name, value in counts.items() if value},
        )

    def _check_dropped(self, totals: Counter) -> None:
        """Stop a run whose data is mostly unusable instead of training on what little is left."""
        unusable = totals["dropped"] + totals["skipped"]
        if totals["records"] and unusable / totals["records"] > self.settings.max_dropped_fraction:
            raise DataValidationError(
                f"{self.sources.key}: {unusable} of {totals['records']} pairs were dropped "
                f"({totals['dropped']} over data.max_seq_len={self.settings.max_seq_len} with "
                f"data.truncation={self.settings.truncation}) or skipped ({totals['skipped']} bad records), "
                f"more than data.max_dropped_fraction={self.settings.max_dropped_fraction}"
            )


def shuffled(items: Iterator[Item], buffer_size: int, rng: random.Random) -> Iterator[Item]:
    """A bounded-memory shuffle: hold `buffer_size` items, emit a random one as each new one arrives."""
    buffer: list[Item] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        index = rng.randrange(buffer_size)
        buffer[index], item = item, buffer[index]
        yield item
    rng.shuffle(buffer)
    yield from buffer


def _count(counts: Counter, totals: Counter, name: str) -> None:
    counts[name] += 1
    totals[name] += 1


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)
