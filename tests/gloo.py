"""Process groups for the tests that start their own gloo ranks (torch.multiprocessing, 2 CPU processes).

The ranks meet through a file (a FileStore in the test's tmp_path), not a TCP store on a port
chosen in advance, which can be taken between choosing and binding it. `free_port` stays for the
runs that Lightning's own launcher starts, which rendezvous over TCP.

A known flake, root cause not found: inside the full suite (rarely, and never when the same test
runs alone on a quiet machine), a rank of a DTensor test sometimes dies of SIGABRT with only
"terminate called without an active exception" on stderr and no Python error, with TCP and file
rendezvous alike. `spawn_ranks` starts the ranks again once when a rank dies of SIGABRT; any
Python exception in a rank, and a second abort, still fail the test.
"""

from __future__ import annotations

import os
import signal
import socket
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port nothing listens on now, for the ranks' rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rendezvous(tmp_path: Path) -> str:
    """The file the ranks of one test meet through (new for each test, as a FileStore needs)."""
    return str(tmp_path / "gloo_rendezvous")


@contextmanager
def gloo_group(rank: int, rendezvous_file: str, world_size: int = 2) -> Iterator[None]:
    """This process as `rank` of a gloo group on localhost, destroyed on the way out even after a failure
    (a rank left in the group would keep the other waiting until its timeout)."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")  # gloo's own connections bind to this address
    dist.init_process_group("gloo", init_method=f"file://{rendezvous_file}", rank=rank, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def spawn_ranks(worker: Callable[..., None], args: tuple[Any, ...], world_size: int = 2) -> None:
    """`worker(rank, *args)` in `world_size` spawned processes, started once more if a rank aborts
    (SIGABRT, see the module docstring). `args[0]` is the rendezvous file, replaced for the retry."""
    try:
        mp.start_processes(worker, args=args, nprocs=world_size, start_method="spawn")
    except mp.ProcessExitedException as error:
        if error.exit_code != -signal.SIGABRT:
            raise
        warnings.warn(f"a gloo rank aborted ({error}); starting the ranks once more", stacklevel=2)
        retry = (f"{args[0]}.retry", *args[1:])
        mp.start_processes(worker, args=retry, nprocs=world_size, start_method="spawn")
