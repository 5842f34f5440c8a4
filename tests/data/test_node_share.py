"""A node's other processes notice early when its first process dies before writing the shared result."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lit_prefopt.data.node_share import FirstProcessDied, marker_path, share_on_node
from lit_prefopt.data.shared_scan import SCAN_FILE

KEY = {"digests": {"train_files": "abc"}, "data": {"on_bad_record": "skip"}}
# A process of the run: local rank argv[2] scans (for a minute: it is killed first) or waits for the scan.
PROCESS = """
import sys, time
from pathlib import Path
from lit_prefopt.data.scan import DataScan
from lit_prefopt.data.shared_scan import shared_scan

def slow_scan():
    time.sleep(60)
    return DataScan(has_reference_scores=False)

shared_scan(slow_scan, Path(sys.argv[1]), {key}, rank_on_node=int(sys.argv[2]), wait_seconds=120)
print("got the scan")
""".replace("{key}", repr(KEY))


def start(run_dir: Path, rank_on_node: int, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PROCESS, str(run_dir), str(rank_on_node)], text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}, **kwargs)


def wait_until(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
def test_waiters_fail_soon_when_the_scanning_process_is_killed(tmp_path):
    run_dir = tmp_path / "run"
    marker = marker_path(run_dir / SCAN_FILE, socket.gethostname())
    scanner = start(run_dir, 0)
    try:
        wait_until(marker.exists, 60)
        waiter = start(run_dir, 1, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(3)
        assert waiter.poll() is None, "the waiter waits while the scanner scans"
        scanner.kill()  # not reaped until the end: an unreaped (zombie) scanner is dead too
        killed = time.monotonic()
        out, err = waiter.communicate(timeout=90)
        noticed = time.monotonic() - killed
    finally:
        scanner.kill()
        scanner.wait()
    assert waiter.returncode != 0 and "got the scan" not in out
    assert "FirstProcessDied" in err and str(run_dir / SCAN_FILE) in err and f"pid {scanner.pid}" in err
    assert noticed < 30, f"noticed after {noticed:.1f} s (a marker of this launch is conclusive at once, not after 120 s)"


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_dead_marker_from_an_earlier_launch_waits_for_this_launchs_first_process(tmp_path):
    """An earlier launch killed mid-scan left its marker (another parent): the new scanner still writes."""
    path = tmp_path / "run" / SCAN_FILE
    marker = marker_path(path, socket.gethostname())
    marker.parent.mkdir()
    marker.write_text(json.dumps({"key": KEY, "host": socket.gethostname(), "pid": _dead_pid(), "ppid": 1}))
    threading.Timer(1.0, lambda: share_on_node(lambda: 7, path, KEY, 0, int, int)).start()
    assert share_on_node(lambda: 0, path, KEY, 1, int, int, wait_seconds=30, stale_seconds=20) == 7
    assert not marker.exists(), "the scanner removes its marker once the result is written"


def test_a_dead_marker_nobody_replaces_fails_after_the_grace(tmp_path):
    path = tmp_path / "run" / SCAN_FILE
    marker = marker_path(path, socket.gethostname())
    marker.parent.mkdir()
    marker.write_text(json.dumps({"key": KEY, "host": socket.gethostname(), "pid": _dead_pid(), "ppid": 1}))
    started = time.monotonic()
    with pytest.raises(FirstProcessDied, match=f"{SCAN_FILE} was never written"):
        share_on_node(lambda: 0, path, KEY, 1, int, int, wait_seconds=30, stale_seconds=1)
    assert 1 <= time.monotonic() - started < 10
    other = {**KEY, "data": {"on_bad_record": "error"}}
    with pytest.raises(TimeoutError):  # a marker for another key says nothing about this scan
        share_on_node(lambda: 0, path, other, 1, int, int, wait_seconds=1, stale_seconds=0)
