"""The GPU check's inputs, built on the spot: a random Llama of a given shape and pairs long enough
to matter, made from the sample pairs bundled with the package (no download, nothing outside the
repository).

The bundled pairs are one-line arithmetic questions; joining `group` consecutive ones field by field
(prompts with prompts, chosen with chosen, rejected with rejected) gives pairs of any length with
the sample's prompt-to-completion proportions. The joined pairs then go through the benchmark's own
filter (`fixture.write_pairs`), so TRL and lit_prefopt see identical tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.fixture import ModelShape, PairFile, build_checkpoint, read_pairs, write_pairs
from lit_prefopt.paths import sample_data_path


def joined_pairs(records: list[dict], group: int) -> list[dict]:
    """Every `group` consecutive records as one record (a trailing partial group is left out)."""
    keys = ("src", "tgt_chosen", "tgt_rejected")
    return [
        {key: "".join(r[key] for r in records[start : start + group]) for key in keys}
        for start in range(0, len(records) - group + 1, group)
    ]


def build_inputs(root: Path, shape: ModelShape, group: int, max_seq_len: int) -> tuple[Path, PairFile]:
    """A checkpoint of `shape` (tokenizer trained on the sample) and the joined pairs that fit."""
    records = list(read_pairs(sample_data_path("train.jsonl")))
    root.mkdir(parents=True, exist_ok=True)
    checkpoint = build_checkpoint(root / "model", shape, records)
    source = root / "joined.jsonl"
    source.write_text("".join(json.dumps(pair) + "\n" for pair in joined_pairs(records, group)))
    return checkpoint, write_pairs(source, checkpoint, root / "pairs.jsonl", max_seq_len)
