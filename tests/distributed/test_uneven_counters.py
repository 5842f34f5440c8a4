"""2-process runs whose ranks see different data counters train to the end with the right totals.

The batch plan is identical on every rank and rank r yields batches r, r + 2, ... of it, so with
`data.shuffle=false` the layout of these files is known: an over-long pair and a bad record sit
in rank 0's first batch only, and an odd number of batches gives rank 1 a padding batch. Before
the data counters were declared once, the ranks all-reduced step sums of different lengths and
gloo aborted at the first step where only one rank had truncated, dropped or skipped a pair.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.distributed.test_strategies import COMMON
from tests.entry_process import run_lit_prefopt

LONG_PAIR = {"src": "Tell me a story.", "tgt_chosen": " once upon a time" * 40, "tgt_rejected": " no" * 40}
BAD_LINE = "{this is not json"


def write_pairs(path: Path, good: int) -> Path:
    """An over-long pair, a bad line, then `good` ordinary pairs, one JSON record per line."""
    lines = [json.dumps(LONG_PAIR), BAD_LINE]
    lines += [json.dumps({"src": f"Question {i}?", "tgt_chosen": f" yes {i}", "tgt_rejected": f" no {i}"})
              for i in range(good)]
    path.write_text("\n".join(lines) + "\n")
    return path


def data_counts(run_dir: Path) -> dict[str, int]:
    return json.loads((run_dir / "summary.json").read_text())["data_counts"]


# (strategy, over-length policy, ordinary pairs, steps of 2 pairs for 2 ranks, steps for 1 rank)
CASES = [
    # 10 usable pairs, 5 batches: rank 0 truncates and skips in its first batch, rank 1 neither,
    # and rank 1's third batch is padding (uneven shards).
    ("ddp", "truncate", 9, 3, 5),
    ("fsdp", "truncate", 9, 3, 5),
    # The long pair is dropped: one usable pair, one batch, so rank 1's only batch is padding.
    ("fsdp", "drop", 1, 1, 1),
]


@pytest.mark.slow
@pytest.mark.parametrize("strategy,truncation,good,steps,single_steps", CASES)
def test_ranks_with_different_counters_match_one_process(
    strategy: str, truncation: str, good: int, steps: int, single_steps: int, tmp_path: Path
) -> None:
    data = write_pairs(tmp_path / "pairs.jsonl", good)
    shared = (
        f"data.train_files=[{data}]", "data.max_seq_len=48", f"data.truncation={truncation}",
        "data.on_bad_record=skip", "data.max_dropped_fraction=0.9", "data.batch_size=2", "export_hf=false",
        *[o for o in COMMON if not o.startswith("trainer.max_steps")],
    )
    run_lit_prefopt("run_name=two", f"strategy={strategy}", "trainer.devices=2", f"trainer.max_steps={steps}", *shared,
                    cwd=tmp_path)
    run_lit_prefopt("run_name=one", f"trainer.max_steps={single_steps}", *shared, cwd=tmp_path)

    two, one = data_counts(tmp_path / "outputs" / "two"), data_counts(tmp_path / "outputs" / "one")
    expected = {"truncated": int(truncation == "truncate"), "dropped": int(truncation == "drop"), "skipped": 1}
    assert {name: one[name] for name in expected} == expected
    assert {name: two[name] for name in expected} == expected
    assert two["padding_batches"] == 1 and one["padding_batches"] == 0
