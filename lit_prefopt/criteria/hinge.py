"""The hinge loss of RSO (Liu et al., 2024, "Statistical Rejection Sampling Improves Preference
Optimization"), with a reference model.

loss = relu(1 - beta D): SLiC's hinge moved onto DPO's reference-normalized margin; a pair stops
contributing once D reaches 1/beta nats.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion, implicit_rewards


def hinge_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair hinge losses and rewards beta * (s - s_ref)."""
    chosen, rejected = implicit_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    return torch.relu(1.0 - (chosen - rejected)), chosen.detach(), rejected.detach()


class Hinge(RewardCriterion):
    """`criterion=hinge`: default beta 0.1."""

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*hinge_loss(*self.inputs(logps), self.beta))
