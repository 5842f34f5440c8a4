"""The data files' digests (the checked resume's `data_digests`) are computed once per node: the
node's other processes read them from the run directory instead of hashing every data file."""

from __future__ import annotations

import hashlib
import os

import pytest

import lit_prefopt.checkpointing.config_check as config_check
from lit_prefopt.checkpointing.config_check import DIGESTS_FILE, shared_data_digests
from tests.data.pairs import pair


@pytest.fixture
def hashed(monkeypatch) -> list:
    """The files this process hashes (the real digest function, counted)."""
    files = []
    digest = config_check.file_digest

    def counted(path, *args):
        files.append(path.name)
        return digest(path, *args)

    monkeypatch.setattr(config_check, "file_digest", counted)
    return files


def test_only_the_nodes_first_process_hashes_the_data(tmp_path, write_jsonl, hashed):
    train, val = write_jsonl("train.jsonl", [pair(0), pair(1)]), write_jsonl("val.jsonl", [pair(2)])
    data = {"train_files": [str(train)], "val_files": [str(val)]}
    run_dir = tmp_path / "run"
    expected = {name: hashlib.sha256(hashlib.sha256(path.read_bytes()).hexdigest().encode()).hexdigest()
                for name, path in (("train_files", train), ("val_files", val))}
    assert shared_data_digests(data, run_dir, rank_on_node=0) == expected
    assert hashed == ["train.jsonl", "val.jsonl"] and (run_dir / DIGESTS_FILE).exists()
    hashed.clear()
    assert shared_data_digests(data, run_dir, rank_on_node=1) == expected
    assert hashed == [], "the node's other processes read the digests"


def test_digests_of_changed_files_are_never_taken(tmp_path, write_jsonl, hashed):
    """A file changed since the digests were written (another size and time): the others wait for new ones."""
    train = write_jsonl("train.jsonl", [pair(0), pair(1)])
    data = {"train_files": [str(train)], "val_files": None}
    run_dir = tmp_path / "run"
    before = shared_data_digests(data, run_dir, rank_on_node=0)
    write_jsonl("train.jsonl", [pair(0)])
    os.utime(train, ns=(1, 1))
    with pytest.raises(TimeoutError, match=DIGESTS_FILE):
        shared_data_digests(data, run_dir, rank_on_node=1, wait_seconds=0.5)
    after = shared_data_digests(data, run_dir, rank_on_node=0)
    assert shared_data_digests(data, run_dir, rank_on_node=1) == after != before
