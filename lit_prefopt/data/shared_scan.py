"""The data scan runs once per node and its result is shared with the node's other processes.

`train()` scans the data before any model loads, and before the Trainer exists: the node's first
process (local rank 0) scans and writes `data_scan.json` in the run directory, the node's other
processes read it (`node_share.py`: how, why per node, and what happens when the first process
dies). The file's key is the digest of the data files and the settings that decide the scan's
result, so a file left by an earlier run over other data or settings is never taken. A failed scan
writes its message instead of a result, and every waiting process raises the same error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lit_prefopt.data.node_share import WAIT_SECONDS, share_on_node
from lit_prefopt.data.scan import DataScan

SCAN_FILE = "data_scan.json"


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
    return share_on_node(scan, run_dir / SCAN_FILE, key, rank_on_node, asdict, lambda fields: DataScan(**fields),
                         wait_seconds=wait_seconds)
