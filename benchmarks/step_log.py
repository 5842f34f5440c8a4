"""What a benchmarked process writes: when each optimizer step ended and what it consumed.

Both systems' children write the same record, so the parent summarizes them with one
function. The interval between consecutive step ends covers everything a step costs (data
loading, forward, backward, optimizer, logging), so no system's overhead is hidden.

Besides the pairs and the non-padding tokens of the padded layout (the prompt in both rows: the
same count for both systems, for throughput), a step records what the model actually encoded:
the positions of the encoded batch (padding included), the non-padding ones among them (the
prompt once where a system shares it) and how many of those the LM head ran on. They give the
padding fraction and the FLOPs actually computed.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class EncodedTokens:
    """One step's encoded batch: its positions (padding included), the non-padding ones, and the
    non-padding positions the LM head was applied to."""

    positions: int
    computed: int
    head: int


@dataclass
class StepLog:
    """Per-step end times (perf_counter seconds), real pairs, non-padding tokens and, where the
    caller measured them, the encoded batch's positions, non-padding positions and LM-head positions."""

    ends: list[float] = field(default_factory=list)
    pairs: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    encoded: list[int] = field(default_factory=list)
    computed: list[int] = field(default_factory=list)
    head: list[int] = field(default_factory=list)

    def record(self, pairs: int, tokens: int, encoded: EncodedTokens | None = None) -> None:
        self.ends.append(time.perf_counter())
        self.pairs.append(pairs)
        self.tokens.append(tokens)
        if encoded is not None:
            self.encoded.append(encoded.positions)
            self.computed.append(encoded.computed)
            self.head.append(encoded.head)

    def write(self, path: Path) -> None:
        record = {**self.__dict__, "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
        # Imported only after the RSS peak is read, so the import cannot raise the reported peak.
        from lit_prefopt.outputs.report import peak_cuda_memory_gib

        record["peak_cuda_gib"] = peak_cuda_memory_gib()
        path.write_text(json.dumps(record))


def summarize(record: dict, warmup: int) -> dict[str, float]:
    """Steady-state rates over the steps after `warmup` (the first steps pay one-off costs)."""
    ends, pairs, tokens = record["ends"], record["pairs"], record["tokens"]
    if len(ends) <= warmup + 1:
        raise ValueError(f"need more than {warmup + 1} steps to time, got {len(ends)}")
    seconds = ends[-1] - ends[warmup]
    steps = len(ends) - 1 - warmup
    timed_pairs = sum(pairs[warmup + 1 :])
    timed_tokens = sum(tokens[warmup + 1 :])
    durations = sorted(b - a for a, b in zip(ends[warmup:], ends[warmup + 1 :]))
    encoded = {}
    if len(record.get("encoded", [])) == len(ends):
        positions = sum(record["encoded"][warmup + 1 :])
        encoded = {
            "padding_fraction": 1 - sum(record["computed"][warmup + 1 :]) / positions,
            "computed_tokens_timed": sum(record["computed"][warmup + 1 :]),
            "head_tokens_timed": sum(record["head"][warmup + 1 :]),
        }
    return {
        "steps_timed": steps,
        # The median resists a step slowed by another process on a shared machine.
        "s_per_step_median": durations[len(durations) // 2],
        "s_per_step": seconds / steps,
        "pairs_per_s": timed_pairs / seconds,
        "tokens_per_s": timed_tokens / seconds,
        "pairs_per_step": timed_pairs / steps,
        "tokens_timed": timed_tokens,
        # torch's allocator high-water mark on the GPU (None on CPU, and in logs of older runs).
        "peak_cuda_gib": record.get("peak_cuda_gib"),
        **encoded,
    }
