"""Process groups for the tests that start their own gloo ranks (torch.multiprocessing, 2 CPU processes)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist


def free_port() -> int:
    """A TCP port nothing listens on now, for the ranks' rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gloo_group(rank: int, port: int, world_size: int = 2) -> Iterator[None]:
    """This process as `rank` of a gloo group on localhost, destroyed on the way out even after a failure
    (a rank left in the group would keep the other waiting until its timeout)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()
