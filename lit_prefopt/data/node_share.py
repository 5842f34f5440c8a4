"""One process per node computes a start-up result; the node's other processes read it from a file.

`train()` does some start-up work (the data files' digests, the data scan) before the Trainer
exists, so there is no process group to broadcast over yet: under Lightning's own launcher the
other ranks are not even started (they start when rank 0 reaches `fit`), and under torchrun or
SLURM they start together but still without a group. So the share goes through a file in the run
directory, which every process of a run uses (`run_agreement.py`): the node's first process
(local rank 0) computes and writes the file atomically, and the node's other processes wait for
it and read it. Per node, not per run: a multi-node run without a shared filesystem would
otherwise leave the other nodes waiting for a file they can never see.

The file names a key (what decides the result), so a file left by an earlier run over other data
or settings is never taken: a reader waits until the file's key matches its own. A computation
that fails on bad data writes its message instead of a result, and every waiting process raises
the same error.

A first process that dies without writing (killed, out of memory, any other exception) must not
leave the others waiting for hours: before computing, it writes a marker naming its host and
pid, and removes it once the file is written. A waiter on the same host that finds the marker's
process gone raises, naming the file. A marker can also be left by an earlier launch that died
in the same place; the new first process overwrites it when it gets there. So a dead marker is
conclusive at once only when it comes from this launch (the marker's process is this process's
parent, as under Lightning's launcher, or a sibling, as under torchrun or srun), and otherwise
after it has stayed unchanged for `stale_seconds`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lit_prefopt.data.records import DataValidationError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Long enough for rank 0 to parse many gigabytes of JSONL; the wait is logged every minute.
WAIT_SECONDS = 2 * 3600.0
# How long a dead marker from another launch may wait for this launch's first process to replace it.
STALE_SECONDS = 120.0
POLL_SECONDS = 0.2


class FirstProcessDied(RuntimeError):
    """The node's first process ended without writing the result the others wait for."""


def share_on_node(
    compute: Callable[[], T],
    path: Path,
    key: dict[str, Any],
    rank_on_node: int,
    to_json: Callable[[T], Any],
    from_json: Callable[[Any], T],
    wait_seconds: float = WAIT_SECONDS,
    stale_seconds: float = STALE_SECONDS,
) -> T:
    """`compute()` on the node's first process, written to `path`; the same result read on the others.

    `key` holds what decides the result; `to_json` / `from_json` turn the result into JSON and back.
    """
    key = json.loads(json.dumps(key, sort_keys=True, default=str))  # as a reader will see it
    marker = marker_path(path, socket.gethostname())
    if rank_on_node == 0:
        _write(marker, {"key": key, "host": socket.gethostname(), "pid": os.getpid(), "ppid": os.getppid()})
        try:
            result = compute()
        except DataValidationError as error:
            _write(path, {"key": key, "error": str(error)})
            marker.unlink(missing_ok=True)
            raise
        _write(path, {"key": key, "result": to_json(result)})
        marker.unlink(missing_ok=True)
        return result
    shared = _wait_for(path, marker, key, wait_seconds, stale_seconds)
    if "error" in shared:
        raise DataValidationError(shared["error"])
    return from_json(shared["result"])


def marker_path(path: Path, host: str) -> Path:
    """Where `host`'s first process says it is computing `path` (one per host on a shared filesystem)."""
    return path.with_name(f".{path.name}.{host}.computing")


def _write(path: Path, content: dict[str, Any]) -> None:
    """Atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(content), encoding="utf-8")
    os.replace(partial, path)


def _wait_for(path: Path, marker: Path, key: dict[str, Any], wait_seconds: float, stale_seconds: float) -> dict[str, Any]:
    started = last_log = time.monotonic()
    dead_since: tuple[Any, float] | None = None  # (the dead marker, when first seen dead)
    while True:
        shared = _read(path)
        if shared is not None and shared.get("key") == key:
            return shared
        now = time.monotonic()
        owner = _read(marker)
        if owner is not None and owner.get("key") == key and not _alive(owner.get("pid")):
            if dead_since is None or dead_since[0] != owner:
                dead_since = (owner, now)
            if _same_launch(owner) or now - dead_since[1] >= stale_seconds:
                raise FirstProcessDied(
                    f"{path} was never written: the node's first process (local rank 0, pid {owner.get('pid')} on "
                    f"{owner.get('host')}) ended while computing it (its marker {marker.name} is left). See that "
                    "process's log for why."
                )
        else:
            dead_since = None
        if now - started > wait_seconds:
            raise TimeoutError(
                f"no result for these data files and settings appeared in {path} within {wait_seconds:.0f} s: "
                "the node's first process (local rank 0) writes it. Did it fail, or does this node not see "
                "the run directory?"
            )
        if now - last_log > 60:
            log.info("waiting for the node's first process to write %s", path)
            last_log = now
        time.sleep(POLL_SECONDS)


def _same_launch(owner: dict[str, Any]) -> bool:
    """The marker's process started this one (Lightning's launcher) or was started with it (torchrun, srun)."""
    parent = os.getppid()
    return owner.get("pid") == parent or (owner.get("ppid") == parent and parent > 1)


def _alive(pid: Any) -> bool:
    """Whether process `pid` (on this host) still runs; an exited process its parent has not yet reaped is not."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
