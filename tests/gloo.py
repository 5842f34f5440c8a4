"""Process groups for the tests that start their own gloo ranks (torch.multiprocessing, 2 CPU processes).

The ranks meet through a file (a FileStore in the test's tmp_path), not a TCP store on a port
chosen in advance: the port can be taken between choosing and binding it, and ranks of
consecutive tests have aborted in the TCP store's client ("terminate called without an active
exception", SIGABRT) without any Python error. `free_port` stays for the runs that Lightning's
own launcher starts, which rendezvous over TCP.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch.distributed as dist


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
