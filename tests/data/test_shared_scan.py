"""The data scan runs on a node's first process only; the others read its result from the run directory."""

from __future__ import annotations

import threading
import time

import pytest

from lit_prefopt.data.records import DataValidationError
from lit_prefopt.data.scan import DataScan, scan_sources
from lit_prefopt.data.shared_scan import SCAN_FILE, local_rank, shared_scan
from lit_prefopt.data.sources import resolve_sources
from tests.data.pairs import pair

KEY = {"digests": {"train_files": "abc"}, "data": {"on_bad_record": "skip"}}


def must_not_scan() -> DataScan:
    raise AssertionError("only the node's first process scans")


def test_other_processes_read_the_first_ones_scan(tmp_path, write_jsonl):
    path = write_jsonl("train.jsonl", [pair(0), "{bad", pair(1, reference_score_chosen=-1.0, reference_score_rejected=-2.0)])
    sources = resolve_sources([str(path)], "data.train_files")
    run_dir = tmp_path / "run"
    first = shared_scan(lambda: scan_sources(sources, None, "skip"), run_dir, KEY, rank_on_node=0)
    assert (first.num_train_records, first.num_skipped, first.has_reference_scores) == (2, 1, False)
    assert shared_scan(must_not_scan, run_dir, KEY, rank_on_node=1) == first


def test_a_process_started_before_the_scan_ends_waits_for_it(tmp_path):
    run_dir = tmp_path / "run"
    result = DataScan(has_reference_scores=True, num_train_records=7, num_val_records=0)
    threading.Timer(0.5, lambda: shared_scan(lambda: result, run_dir, KEY, rank_on_node=0)).start()
    started = time.monotonic()
    assert shared_scan(must_not_scan, run_dir, KEY, rank_on_node=1, wait_seconds=30) == result
    assert time.monotonic() - started >= 0.4


def test_a_scan_of_other_data_or_settings_is_never_taken(tmp_path):
    run_dir = tmp_path / "run"
    shared_scan(lambda: DataScan(has_reference_scores=True), run_dir, KEY, rank_on_node=0)
    other = {**KEY, "data": {"on_bad_record": "error"}}
    with pytest.raises(TimeoutError, match=f"{SCAN_FILE}.*local rank 0"):
        shared_scan(must_not_scan, run_dir, other, rank_on_node=1, wait_seconds=0.5)


def test_a_failed_scan_fails_every_process_with_its_message(tmp_path, write_jsonl):
    path = write_jsonl("train.jsonl", [pair(0), "{bad"])
    sources = resolve_sources([str(path)], "data.train_files")
    run_dir = tmp_path / "run"
    with pytest.raises(DataValidationError) as first:
        shared_scan(lambda: scan_sources(sources, None, "error"), run_dir, KEY, rank_on_node=0)
    with pytest.raises(DataValidationError) as other:
        shared_scan(must_not_scan, run_dir, KEY, rank_on_node=1, wait_seconds=5)
    assert str(other.value) == str(first.value) and "train.jsonl:2" in str(other.value)


@pytest.mark.parametrize(("env", "expected"), [
    ({}, 0), ({"LOCAL_RANK": "3"}, 3), ({"SLURM_LOCALID": "2"}, 2), ({"LOCAL_RANK": "1", "SLURM_LOCALID": "5"}, 1),
])
def test_local_rank_comes_from_the_launcher(env, expected):
    assert local_rank(env) == expected
