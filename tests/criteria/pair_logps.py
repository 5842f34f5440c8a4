"""Small PairLogps for the criterion tests, and softplus written out for hand derivations."""

from __future__ import annotations

import math

import torch

from lit_prefopt.criteria.base import PairLogps


def pair(
    chosen: float = -1.0,
    rejected: float = -3.0,
    ref_chosen: float = -2.0,
    ref_rejected: float = -2.0,
    chosen_len: float = 4.0,
    rejected_len: float = 3.0,
    dtype: torch.dtype = torch.float32,
) -> PairLogps:
    """One pair as leaf tensors with gradients. The defaults are the standard pair of the tests:
    s_w = -1, s_l = -3, |y_w| = 4, |y_l| = 3, reference -2 for both, so the summed log-ratios
    are +1 (chosen) and -1 (rejected)."""
    leaf = lambda v: torch.tensor([v], dtype=dtype, requires_grad=True)
    return PairLogps(
        leaf(chosen),
        leaf(rejected),
        torch.tensor([chosen_len]),
        torch.tensor([rejected_len]),
        leaf(ref_chosen),
        leaf(ref_rejected),
    )


def softplus(x: float) -> float:
    """log(1 + e^x) = -log sig(-x), by hand."""
    return math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
