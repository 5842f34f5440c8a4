"""A step's gradient scaling, global norm and clipping: one pass, and one all-reduce under FSDP.

Under FSDP2 every gradient is a DTensor shard. Taking each one's norm with `full_tensor()` costs a
collective per tensor (about 290 per step at 8B), and Lightning's `gradient_clip_val` would then
compute the same norm again. Here each rank sums the squares of its own shards and one all-reduce
over the sharding dimension of the mesh makes that sum global.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor, Shard


def global_grad_norm(grads: list[Tensor]) -> Tensor:
    """The L2 norm of all `grads` as one vector, in float32; identical on every rank.

    Plain tensors are complete on every rank (DDP, one process) and need no communication. DTensors
    are grouped by mesh and sharded mesh dimensions (one group under FSDP): their local squares are
    summed, then all-reduced once per group and sharded dimension.
    """
    if not grads:
        return torch.zeros(())
    device = grads[0].device
    plain = [g.detach() for g in grads if not isinstance(g, DTensor)]
    groups: dict[tuple, list[Tensor]] = {}
    for grad in grads:
        if isinstance(grad, DTensor):
            sharded = tuple(dim for dim, placement in enumerate(grad.placements) if isinstance(placement, Shard))
            groups.setdefault((grad.device_mesh, sharded), []).append(grad.to_local().detach())
    total = _sum_of_squares(plain, device)
    for (mesh, sharded_dims), shards in groups.items():
        squares = _sum_of_squares(shards, device)
        for dim in sharded_dims:
            dist.all_reduce(squares, group=mesh.get_group(dim))
        total = total + squares
    return total.sqrt()


def scale_and_clip_(grads: list[Tensor], scale: Tensor | float, max_norm: float | None) -> Tensor:
    """Multiply `grads` in place by `scale` and, when `max_norm` is set, shrink them to that global
    norm (as `clip_grad_norm_` does); returns the norm after scaling, before clipping.

    The norm is taken once, of the unscaled gradients, and scaling and clipping are one multiply.
    """
    grad_norm = global_grad_norm(grads) * scale
    factor = torch.as_tensor(scale, dtype=torch.float32, device=grad_norm.device)
    if max_norm:
        factor = factor * (max_norm / (grad_norm + 1e-6)).clamp(max=1.0)
    if grads:
        # In place on the local shards: DTensor ops refuse a plain tensor operand.
        local = [g.to_local() if isinstance(g, DTensor) else g for g in grads]
        torch._foreach_mul_(local, factor.to(local[0].device))
    return grad_norm


def _sum_of_squares(tensors: list[Tensor], device: torch.device) -> Tensor:
    if not tensors:
        return torch.zeros((), dtype=torch.float32, device=device)
    norms = torch._foreach_norm(tensors, 2.0, dtype=torch.float32)
    return torch.stack(norms).square().sum()
