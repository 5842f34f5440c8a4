"""Robust DPO (Chowdhury et al., 2024, "Provably Robust DPO"): DPO de-biased for label noise.

With l(z) = -log sig(z) and a label-flip rate eps,
loss = ((1 - eps) l(beta D) - eps l(-beta D)) / (1 - 2 eps). Unlike cDPO's smoothing, which
mixes the two directions, this is an unbiased estimate of the clean DPO loss: its expectation
over labels flipped with probability eps equals DPO's loss on the true labels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.dpo import require_label_smoothing
from lit_prefopt.criteria.reference_margin import RewardCriterion, implicit_rewards


def robust_dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
    label_smoothing: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair robust DPO losses and rewards beta * (s - s_ref)."""
    chosen, rejected = implicit_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    margin = chosen - rejected
    eps = label_smoothing
    losses = ((1 - eps) * -F.logsigmoid(margin) - eps * -F.logsigmoid(-margin)) / (1 - 2 * eps)
    return losses, chosen.detach(), rejected.detach()


class RobustDPO(RewardCriterion):
    """`criterion=robust_dpo`: defaults beta 0.1, label_smoothing (eps) 0.1."""

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.1, nll_scale: float = 0.0) -> None:
        super().__init__(beta, nll_scale)
        self.label_smoothing = require_label_smoothing(label_smoothing)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*robust_dpo_loss(*self.inputs(logps), self.beta, self.label_smoothing))
