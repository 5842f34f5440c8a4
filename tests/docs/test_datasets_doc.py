"""docs/DATASETS.md's converters produce records the data pipeline accepts, shaped as documented."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from lit_prefopt.data.records import parse_record
from tests.hh_harmless import HH_VALID

REPO = Path(__file__).resolve().parents[2]

HH = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant: It is 4.",
      "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant: Go away."}
ULTRAFEEDBACK = {"prompt_id": "p1", "prompt": "2+2?",
                 "chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4."}],
                 "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5."}]}
STRINGS = {"prompt": "Q: 2+2?\nA:", "chosen": " 4", "rejected": " 5"}
IDENTICAL = {"prompt": "Q", "chosen": " same", "rejected": " same"}


@pytest.fixture
def convert() -> ModuleType:
    """docs/examples/convert.py, loaded from its file (a script users copy, not a package)."""
    spec = importlib.util.spec_from_file_location("docs_examples_convert", REPO / "docs" / "examples" / "convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converters_write_valid_records(convert, tmp_path: Path) -> None:
    cases = {"hh-rlhf": [HH], "ultrafeedback": [ULTRAFEEDBACK], "prompt-chosen-rejected": [STRINGS, IDENTICAL]}
    converted = {}
    for kind, records in cases.items():
        source, target = tmp_path / f"{kind}.raw.jsonl", tmp_path / f"{kind}.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in records))
        written, left_out = convert.convert(kind, str(source), str(target))
        lines = target.read_bytes().splitlines()
        assert (written, left_out) == (1, len(records) - 1) and len(lines) == 1
        converted[kind] = parse_record(lines[0], f"{target}:1")

    hh = converted["hh-rlhf"]
    assert hh.prompt == "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant:"
    assert (hh.chosen, hh.rejected) == (" It is 4.", " Go away.")
    chat = converted["ultrafeedback"]
    assert chat.is_chat and chat.id == "p1" and chat.prompt == ULTRAFEEDBACK["chosen"][:1]
    assert chat.chosen == [{"role": "assistant", "content": "4."}]
    assert converted["prompt-chosen-rejected"].prompt == STRINGS["prompt"]


def test_converter_rebuilds_the_shipped_hh_harmless_pairs(convert) -> None:
    """data/hh_harmless/ was made this way: every pair, joined back into two HH-RLHF transcripts,
    converts to the same src (ending with the Assistant header) and completions."""
    records = [json.loads(line) for line in HH_VALID.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 256
    for record in records:
        raw = {"chosen": record["src"] + record["tgt_chosen"], "rejected": record["src"] + record["tgt_rejected"]}
        assert convert.from_hh_rlhf(raw) == {k: record[k] for k in ("src", "tgt_chosen", "tgt_rejected")}, record["id"]


def test_guide_documents_every_converter(convert) -> None:
    guide = (REPO / "docs" / "DATASETS.md").read_text()
    documented = set(re.findall(r"convert\.py (\S+) raw\.jsonl", guide))
    assert documented == set(convert.CONVERTERS)
