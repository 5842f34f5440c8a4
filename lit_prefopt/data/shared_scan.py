"""The data scan runs once per node and its result is shared with the node's other processes.

`train()` scans the data before any model loads, and before the Trainer exists, so there is no
process group to broadcast over yet: under Lightning's own launcher the other ranks are not even
started (they start when rank 0 reaches `fit`), and under torchrun or SLURM they start together
but still without a group. So the share goes through a file in the run directory, which every
process of a run uses (`run_agreement.py`): the node's first process (local rank 0) scans and
writes `data_scan.json` atomically, and the node's other processes wait for it and read it.

Per node, not per run: a multi-node run without a shared filesystem would otherwise leave the
other nodes waiting for a file they can never see (`RunAgreement` explains that case only after
the scan). The file names the digest of the data files and the settings that decide the scan's
result, so a file left by an earlier run over other data or settings is never taken: a reader
waits until the file's key matches its own. A failed scan writes its message instead of a result,
and every waiting process raises the same error rather than waiting for a result that never comes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lit_prefopt.data.records import DataValidationError
from lit_prefopt.data.scan import DataScan

log = logging.getLogger(__name__)

SCAN_FILE = "data_scan.json"
# Long enough for rank 0 to parse many gigabytes of JSONL; the wait is logged every minute.
WAIT_SECONDS = 2 * 3600.0
POLL_SECONDS = 0.2


def local_rank(env: Mapping[str, str] = os.environ) -> int:
    """This process's rank on its node, from the launcher's environment (0 when started alone)."""
    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        if env.get(name, "").isdigit():
            return int(env[name])
    return 0


def shared_scan(
    scan: Callable[[], DataScan],
    run_dir: Path,
    key: dict[str, Any],
    rank_on_node: int,
    wait_seconds: float = WAIT_SECONDS,
) -> DataScan:
    """`scan()` on the node's first process, written to `run_dir`; the same result read on the others.

    `key` holds what decides the result (the data files' digests and the scan settings).
    """
    path = run_dir / SCAN_FILE
    key = json.loads(json.dumps(key, sort_keys=True, default=str))  # as a reader will see it
    if rank_on_node == 0:
        try:
            result = scan()
        except DataValidationError as error:
            _write(path, {"key": key, "error": str(error)})
            raise
        _write(path, {"key": key, "scan": asdict(result)})
        return result
    shared = _wait_for(path, key, wait_seconds)
    if "error" in shared:
        raise DataValidationError(shared["error"])
    return DataScan(**shared["scan"])


def _write(path: Path, content: dict[str, Any]) -> None:
    """Atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(content), encoding="utf-8")
    os.replace(partial, path)


def _wait_for(path: Path, key: dict[str, Any], wait_seconds: float) -> dict[str, Any]:
    started = last_log = time.monotonic()
    while True:
        shared = _read(path)
        if shared is not None and shared.get("key") == key:
            return shared
        now = time.monotonic()
        if now - started > wait_seconds:
            raise TimeoutError(
                f"no data scan for these data files and settings appeared in {path} within {wait_seconds:.0f} s: "
                "the node's first process (local rank 0) writes it. Did it fail, or does this node not see "
                "the run directory?"
            )
        if now - last_log > 60:
            log.info("waiting for the node's first process to write the data scan to %s", path)
            last_log = now
        time.sleep(POLL_SECONDS)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
