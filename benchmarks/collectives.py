"""Counting what FSDP2's all-gathers move on one rank, by wrapping torch.distributed's entry point.

FSDP2 gathers each layer's parameters with `torch.distributed.all_gather_single` (its shard in,
the whole flat buffer out). Wrapping that function in a rank's process, before the model is
sharded, sees every parameter all-gather of forward, backward and the reference's forward,
whatever the precision policy; the dtype of the shard sent is the dtype the gather moves.
"""

from __future__ import annotations

from collections import Counter

import torch.distributed as dist


class AllGatherCounter:
    """Elements sent per dtype and bytes received, by all-gathers made while `recording` is true."""

    def __init__(self) -> None:
        self.recording = False
        self.sent_numel: Counter[str] = Counter()
        self.received_bytes = 0

    def install(self) -> AllGatherCounter:
        """Wrap `torch.distributed.all_gather_single` in this process (once per process)."""
        gather = dist.all_gather_single

        def all_gather_single(output, tensor, *args, **kwargs):
            if self.recording:
                self.sent_numel[str(tensor.dtype)] += tensor.numel()
                self.received_bytes += output.numel() * output.element_size()
            return gather(output, tensor, *args, **kwargs)

        dist.all_gather_single = all_gather_single
        return self
