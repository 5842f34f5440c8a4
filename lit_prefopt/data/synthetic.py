"""Benign synthetic preference pairs with a learnable rule, for the default run and tests.

Each prompt asks a small arithmetic question. The chosen reply answers correctly in a helpful
sentence; the rejected reply is curt and gives a wrong number. A policy can learn the preference
(style and correctness) from a few hundred pairs on a CPU, which is what the learning tests need
to catch sign errors: held-out reward accuracy starts near chance and must rise.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HELPFUL = [
    "Sure! {a} {op} {b} equals {r}.",
    "Happy to help: the answer is {r}.",
    "Of course. {a} {op} {b} is {r}.",
    "Good question! It comes to {r}.",
]
CURT = [
    "No idea. Maybe {w}?",
    "Figure it out yourself, it's {w} or something.",
    "Whatever, {w}.",
    "Not my problem. {w}.",
]
QUESTIONS = [
    "What is {a} {op} {b}?",
    "Can you tell me what {a} {op} {b} is?",
    "Please compute {a} {op} {b}.",
    "How much is {a} {op} {b}?",
]
OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "times": lambda a, b: a * b}


def make_pair(rng: random.Random, index: int) -> dict:
    """One record in the default schema (docs/ARCHITECTURE.md#data-records-and-tokenization)."""
    op = rng.choice(list(OPERATIONS))
    a, b = rng.randint(2, 40), rng.randint(2, 40)
    result = OPERATIONS[op](a, b)
    wrong = result + rng.choice([-3, -2, -1, 1, 2, 3, 10])
    fields = dict(a=a, b=b, op=op, r=result, w=wrong)
    return {
        "id": f"arith-{index}",
        "src": "User: " + rng.choice(QUESTIONS).format(**fields) + "\nAssistant:",
        "tgt_chosen": " " + rng.choice(HELPFUL).format(**fields),
        "tgt_rejected": " " + rng.choice(CURT).format(**fields),
    }


def write_pairs(path: Path, count: int, seed: int) -> Path:
    """Write `count` pairs to a JSONL file, reproducibly from `seed`."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for index in range(count):
            out.write(json.dumps(make_pair(rng, index)) + "\n")
    return path


if __name__ == "__main__":
    # Regenerates the bundled sample: python -m lit_prefopt.data.synthetic
    from lit_prefopt.paths import sample_data_path

    write_pairs(sample_data_path("train.jsonl"), 512, seed=1)
    write_pairs(sample_data_path("valid.jsonl"), 256, seed=2)
