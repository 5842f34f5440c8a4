"""Convert public preference datasets to lit_prefopt's JSONL records (docs/DATASETS.md).

    python docs/examples/convert.py hh-rlhf raw.jsonl train.jsonl
    python docs/examples/convert.py ultrafeedback raw.jsonl train.jsonl
    python docs/examples/convert.py prompt-chosen-rejected raw.jsonl train.jsonl

Input is JSONL with one source record per line (export a Hugging Face split with
`dataset.to_json("raw.jsonl")`). A record that does not fit the shape (a missing field, say),
or whose converted pair lit_prefopt would reject (identical or empty completions, ...), is
counted and left out; the first few reasons are printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from lit_prefopt.data.records import BadRecord, parse_record

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


# How many of the reasons for leaving records out are printed.
REASONS_SHOWN = 5


def convert(kind: str, source: str, target: str) -> tuple[int, int]:
    """Write the converted records of `source` to `target`; return (written, left out).

    Each written line passes lit_prefopt's own record check, so training never rejects one.
    """
    written = left_out = 0
    with open(source, encoding="utf-8") as lines, open(target, "w", encoding="utf-8") as out:
        for line_no, line in enumerate(lines, start=1):
            where = f"{source}:{line_no}"
            try:
                converted = CONVERTERS[kind](json.loads(line))
                if converted is None:
                    raise BadRecord(where, "not the expected shape, or identical completions")
                record = json.dumps({k: v for k, v in converted.items() if v is not None}, ensure_ascii=False)
                parse_record(record.encode("utf-8"), where)
            except (KeyError, TypeError, IndexError, AttributeError, ValueError) as error:
                left_out += 1
                if left_out <= REASONS_SHOWN:
                    print(f"left out {where}: {_reason(error)}", file=sys.stderr)
                continue
            out.write(record + "\n")
            written += 1
    return written, left_out


def _reason(error: Exception) -> str:
    if isinstance(error, BadRecord):
        return error.problem
    if isinstance(error, KeyError):
        return f"missing field {error}"
    return str(error)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in CONVERTERS:
        sys.exit(f"usage: python {sys.argv[0]} {{{','.join(CONVERTERS)}}} SOURCE.jsonl TARGET.jsonl\n{__doc__}")
    written, left_out = convert(*sys.argv[1:4])
    print(f"wrote {written} pairs, left out {left_out}")
