"""docs/examples/convert.py leaves out, and counts, every record training would reject or that
lacks a field, and explains itself when run without arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.entry_process import entry_env

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs" / "examples" / "convert.py"

GOOD = {"prompt": "Q: 2+2?\nA:", "chosen": " 4", "rejected": " 5"}
EMPTY_CHOSEN = {"prompt": "Q", "chosen": "", "rejected": " no"}
BLANK_REJECTED = {"prompt": "Q", "chosen": " yes", "rejected": "   "}
NO_CHOSEN = {"prompt": "Q", "rejected": " no"}
HH_EMPTY_ANSWER = {"chosen": "\n\nHuman: Hi\n\nAssistant:", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}


@pytest.fixture
def convert(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "docs" / "examples"))
    import convert

    return convert


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_empty_completions_and_missing_fields_are_counted_and_left_out(convert, tmp_path: Path, capsys) -> None:
    source = write(tmp_path / "raw.jsonl", [GOOD, EMPTY_CHOSEN, NO_CHOSEN, BLANK_REJECTED, GOOD])
    target = tmp_path / "train.jsonl"
    assert convert.convert("prompt-chosen-rejected", str(source), str(target)) == (2, 3)
    assert [json.loads(line)["tgt_chosen"] for line in target.read_text().splitlines()] == [" 4", " 4"]
    reasons = capsys.readouterr().err
    assert f"{source}:2: field 'tgt_chosen' is empty" in reasons
    assert f"{source}:3: missing field 'chosen'" in reasons
    assert f"{source}:4: field 'tgt_rejected' is empty" in reasons

    hh = write(tmp_path / "hh.jsonl", [HH_EMPTY_ANSWER])
    assert convert.convert("hh-rlhf", str(hh), str(tmp_path / "hh_train.jsonl")) == (0, 1)


@pytest.mark.slow
def test_usage_without_arguments() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=entry_env(), timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "usage:" in result.stderr and "hh-rlhf,ultrafeedback,prompt-chosen-rejected" in result.stderr
