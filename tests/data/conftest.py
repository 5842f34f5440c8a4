"""Fixtures for the data tests: a small local tokenizer and helpers to write JSONL files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from lit_prefopt.models.tiny import build_tokenizer, sample_texts
from lit_prefopt.paths import sample_data_path


@pytest.fixture(scope="session")
def tokenizer():
    """A byte-level BPE tokenizer with BOS, EOS, PAD and a chat template, trained on the sample."""
    return build_tokenizer(sample_texts([sample_data_path("train.jsonl")]), vocab_size=512)


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    """Write records (dicts, or raw strings/bytes for bad lines) to tmp_path/<name>."""

    def _write(name: str, records: list) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(
            (r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode()) + b"\n" for r in records
        )
        path.write_bytes(data)
        return path

    return _write
