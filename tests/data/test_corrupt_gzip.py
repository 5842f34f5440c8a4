"""A corrupt gzip file (bad deflate data, not just cut short) is a bad record at its file:line,
skippable like any other, in the scan and in the stream of an unscanned run."""

from __future__ import annotations

import gzip
import json

import pytest
from tests.data.pairs import pair

from lit_prefopt.data.datamodule import PreferenceDataModule
from lit_prefopt.data.records import DataValidationError


@pytest.fixture
def corrupt_gz(tmp_path):
    """A .jsonl.gz whose deflate stream is overwritten with 0xff bytes right after its header:
    zlib fails on it with `zlib.error` ("invalid ..."), which is not an OSError."""
    path = tmp_path / "corrupt.jsonl.gz"
    data = bytearray(gzip.compress("".join(json.dumps(pair(i)) + "\n" for i in range(50)).encode()))
    data[20:28] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(Exception) as raw:  # the failure the reader has to turn into a bad record
        gzip.decompress(bytes(data))
    assert not isinstance(raw.value, OSError)
    return path


def test_scan_reports_the_corrupt_file_at_its_line(write_jsonl, corrupt_gz) -> None:
    good = write_jsonl("good.jsonl", [pair(0)])
    with pytest.raises(DataValidationError, match=f"{corrupt_gz}:1: unreadable file"):
        PreferenceDataModule([str(good), str(corrupt_gz)]).scan()


def test_skip_counts_the_corrupt_file_and_trains_on_the_rest(write_jsonl, corrupt_gz, tokenizer) -> None:
    good = write_jsonl("good.jsonl", [pair(0), pair(1)])
    dm = PreferenceDataModule([str(good), str(corrupt_gz)], on_bad_record="skip", batch_size=8, shuffle=False,
                              tokenizer=tokenizer)
    scan = dm.scan()
    assert (scan.num_train_records, scan.num_skipped) == (2, 1)
    (batch,) = list(dm.train_dataloader())
    assert batch.ids == ["0", "1"] and batch.counts["skipped"] == 1


def test_unscanned_stream_stops_with_file_and_line(write_jsonl, corrupt_gz, tokenizer) -> None:
    good = write_jsonl("good.jsonl", [pair(0)])
    dm = PreferenceDataModule([str(good), str(corrupt_gz)], validate=False, tokenizer=tokenizer)
    dm.scan()
    with pytest.raises(DataValidationError, match=f"{corrupt_gz}:1: unreadable file"):
        list(dm.train_dataloader())
