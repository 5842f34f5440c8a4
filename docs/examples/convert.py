"""Convert public preference datasets to lit_prefopt's JSONL records (docs/DATASETS.md).

    python docs/examples/convert.py hh-rlhf raw.jsonl train.jsonl
    python docs/examples/convert.py ultrafeedback raw.jsonl train.jsonl
    python docs/examples/convert.py prompt-chosen-rejected raw.jsonl train.jsonl

Input is JSONL with one source record per line (export a Hugging Face split with
`dataset.to_json("raw.jsonl")`). A record that does not fit the shape, or whose chosen and
rejected completions are identical (lit_prefopt rejects those), is counted and left out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

ASSISTANT = "\n\nAssistant:"


def from_hh_rlhf(record: dict) -> dict | None:
    """Anthropic HH-RLHF: two whole transcripts that differ only in the last assistant turn.

    The prompt is the shared transcript up to and including the last "Assistant:" header; each
    completion is the rest of its transcript (text record, fairseq2's tokenization).
    """
    chosen, rejected = record["chosen"], record["rejected"]
    cut = chosen.rfind(ASSISTANT) + len(ASSISTANT)
    prompt = chosen[:cut]
    if cut < len(ASSISTANT) or not rejected.startswith(prompt) or chosen == rejected:
        return None
    return {"src": prompt, "tgt_chosen": chosen[cut:], "tgt_rejected": rejected[cut:]}


def from_ultrafeedback(record: dict) -> dict | None:
    """UltraFeedback binarized: message lists that share every turn but the last assistant one.

    The shared turns become the chat prompt, the last turns the chosen and rejected completions.
    """
    chosen, rejected = record["chosen"], record["rejected"]
    if chosen[:-1] != rejected[:-1] or chosen[-1] == rejected[-1]:
        return None
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        return None
    return {"id": record.get("prompt_id"), "prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def from_prompt_chosen_rejected(record: dict) -> dict | None:
    """TRL's standard format with plain strings: the prompt and completions are used as they are."""
    if record["chosen"] == record["rejected"]:
        return None
    return {"src": record["prompt"], "tgt_chosen": record["chosen"], "tgt_rejected": record["rejected"]}


CONVERTERS: dict[str, Callable[[dict], dict | None]] = {
    "hh-rlhf": from_hh_rlhf,
    "ultrafeedback": from_ultrafeedback,
    "prompt-chosen-rejected": from_prompt_chosen_rejected,
}


def convert(kind: str, source: str, target: str) -> tuple[int, int]:
    """Write the converted records of `source` to `target`; return (written, left out)."""
    written = left_out = 0
    with open(source, encoding="utf-8") as lines, open(target, "w", encoding="utf-8") as out:
        for line in lines:
            converted = CONVERTERS[kind](json.loads(line))
            if converted is None:
                left_out += 1
                continue
            out.write(json.dumps({k: v for k, v in converted.items() if v is not None}, ensure_ascii=False) + "\n")
            written += 1
    return written, left_out


if __name__ == "__main__":
    written, left_out = convert(*sys.argv[1:4])
    print(f"wrote {written} pairs, left out {left_out}")
