"""One live run per run directory: a second run with the same run_name is refused, naming the holder."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lit_prefopt.checkpointing.lock import RunDirectoryLocked, RunLock
from tests.entry_process import entry_env, start_lit_prefopt


def test_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    first = RunLock(tmp_path)
    first.acquire()
    with pytest.raises(RunDirectoryLocked, match=rf"host {socket.gethostname()}, pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    second = RunLock(tmp_path)
    second.acquire()  # free again once released
    second.release()


def test_stale_lock_of_a_dead_process_is_taken_over_and_another_hosts_is_not(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "started": 0}))
    taker = RunLock(tmp_path)
    taker.acquire()
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    taker.release()

    lock.write_text(json.dumps({"host": "node-17", "pid": 4242, "started": 0}))
    with pytest.raises(RunDirectoryLocked, match=rf"host node-17, pid 4242.*delete {lock}"):
        RunLock(tmp_path).acquire()


@pytest.mark.slow
def test_second_run_with_the_same_run_name_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    overrides = ("run_name=same", "trainer.max_steps=4", "data.batch_size=2", "export_hf=false", "data.val_files=null")
    run_dir = tmp_path / "outputs" / "same"
    first = start_lit_prefopt(*overrides, cwd=tmp_path)
    deadline = time.monotonic() + 240
    while not (run_dir / ".lock").exists():
        assert first.poll() is None and time.monotonic() < deadline, "the first run never locked its directory"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGSTOP)  # hold the first run while the second tries: alive, holding the lock
    second = subprocess.run([sys.executable, "-m", "lit_prefopt", *overrides, "seed=1"], cwd=tmp_path, env=entry_env(),
                            capture_output=True, text=True, timeout=300)
    os.killpg(first.pid, signal.SIGCONT)
    assert second.returncode != 0
    assert f"host {socket.gethostname()}, pid {first.pid}" in second.stdout + second.stderr
    assert first.wait(timeout=600) == 0
    assert "seed: 0" in (run_dir / ".hydra" / "config.yaml").read_text(), "the first run's config is its own"
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted({int(r["step"]) for r in rows if r.get("train/loss")}) == list(range(4))
    assert not (run_dir / ".lock").exists(), "the lock is gone when the run ends"
