"""One live run per run directory: an exclusive lock file, `<run_dir>/.lock`.

Mechanism: the lock is a file created with `O_CREAT | O_EXCL`, which is atomic on local
filesystems and on NFS (v3 and later), unlike `flock`/`fcntl` locks, which some NFS setups do not
carry between machines. It holds the holder's host, pid and start time, and is removed when the
run ends (normally, by an error, or by SIGTERM/SIGINT).

Limits: a run killed with SIGKILL (or a machine that died) leaves the file behind. A new run on
the same host takes it over when that pid is no longer alive; on another host it cannot tell
whether the holder lives, so it refuses and names the file to delete. Two containers sharing a
hostname but not a pid namespace look like one host: there a dead holder's pid may look alive
(refused, never wrongly taken over) unless a process with that pid exists. Only the global-rank-0
process locks: other ranks of the same run write into the directory under its lock.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"


class RunDirectoryLocked(RuntimeError):
    """Another run holds the directory."""


class RunLock:
    """The lock on one run directory, held from `acquire()` to `release()`."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self.held = False

    def acquire(self) -> None:
        """Take the lock, taking over a stale one (same host, holder dead); else raise naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock removed by us or by a competitor: try again
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None or not _is_stale(holder):
                    raise RunDirectoryLocked(self._refusal(holder)) from None
                self._remove_stale(holder)
                continue
            with os.fdopen(descriptor, "w") as file:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}, file)
            self.held = True
            return
        raise RunDirectoryLocked(self._refusal(self._holder()))

    def release(self) -> None:
        """Remove the lock file if this process holds it."""
        if self.held:
            self.held = False
            self.path.unlink(missing_ok=True)

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):  # being written right now, or gone
            return None

    def _remove_stale(self, holder: dict) -> None:
        """Move the stale file aside first, so two runs taking it over at once cannot both win."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if json.loads(aside.read_text() or "null") != holder:  # a fresh lock was taken meanwhile: put it back
            os.rename(aside, self.path)
            return
        aside.unlink()

    def _refusal(self, holder: dict | None) -> str:
        run_dir = self.path.parent
        if holder is None:
            return f"{run_dir} is locked by another run ({self.path} is being written); try again"
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
        who = f"host {holder.get('host')}, pid {holder.get('pid')}, started {started}"
        if holder.get("host") == socket.gethostname():
            return f"{run_dir} is in use by a running lit_prefopt run ({who}): wait for it, or choose another run_name"
        return (
            f"{run_dir} is in use by a run on another machine ({who}). If no run is alive there "
            f"(it was killed), delete {self.path} and start again; otherwise choose another run_name"
        )


def _is_stale(holder: dict) -> bool:
    """Held by a process of this host that no longer exists."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False
    return False


def is_global_rank_zero() -> bool:
    """Whether this process is global rank 0 (or the only process), read from the launcher's
    environment before any process group exists: torchrun sets RANK; Lightning's own launcher
    sets LOCAL_RANK and NODE_RANK in the processes it starts (which inherit SLURM_PROCID, so that
    comes last); srun sets SLURM_PROCID."""
    if os.environ.get("RANK") is not None:
        return int(os.environ["RANK"]) == 0
    if os.environ.get("LOCAL_RANK") is not None:
        return int(os.environ["LOCAL_RANK"]) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0
    return int(os.environ.get("SLURM_PROCID", 0)) == 0
