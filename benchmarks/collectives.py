"""Counting what FSDP2's all-gathers move on one rank, by wrapping torch.distributed's entry point.

FSDP2 gathers each layer's parameters with one collective (its shard in, the whole flat buffer
out): `torch.distributed.all_gather_single` from torch 2.13 on, `all_gather_into_tensor` before
(torch 2.11, for example, the GPU machine's). Wrapping that function in a rank's process, before
the model is sharded, sees every parameter all-gather of forward, backward and the reference's
forward, whatever the precision policy; the dtype of the shard sent is the dtype the gather moves.
"""

from __future__ import annotations

from collections import Counter

import torch.distributed as dist

# The all-gather FSDP2 of this torch calls (both take the output buffer first, then the shard).
FSDP_ALL_GATHER = "all_gather_single" if hasattr(dist, "all_gather_single") else "all_gather_into_tensor"


class AllGatherCounter:
    """Elements sent per dtype and bytes received, by all-gathers made while `recording` is true."""

    def __init__(self) -> None:
        self.recording = False
        self.sent_numel: Counter[str] = Counter()
        self.received_bytes = 0

    def install(self) -> AllGatherCounter:
        """Wrap FSDP2's all-gather (`FSDP_ALL_GATHER`) in this process (once per process)."""
        gather = getattr(dist, FSDP_ALL_GATHER)

        def counted(output, tensor, *args, **kwargs):
            if self.recording:
                self.sent_numel[str(tensor.dtype)] += tensor.numel()
                self.received_bytes += output.numel() * output.element_size()
            return gather(output, tensor, *args, **kwargs)

        setattr(dist, FSDP_ALL_GATHER, counted)
        return self
