"""Robust DPO (Chowdhury et al., 2024): an unbiased DPO loss under label noise rate eps.

loss = ((1 - eps) * -log sig(beta D) - eps * -log sig(-beta D)) / (1 - 2 eps). Unlike cDPO's
smoothing (which averages the two directions), this de-biases the loss: its expectation under
flipped labels equals the clean DPO loss.
"""

from __future__ import annotations

import torch.nn.functional as F

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion


class RobustDPO(RewardCriterion):
    """`criterion=robust_dpo`: defaults beta 0.1, label_smoothing (eps) 0.1."""

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.1, nll_scale: float = 0.0) -> None:
        super().__init__(beta, nll_scale)
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"criterion.label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = self.rewards(logps)
        margin = chosen - rejected
        eps = self.label_smoothing
        losses = ((1 - eps) * -F.logsigmoid(margin) - eps * -F.logsigmoid(-margin)) / (1 - 2 * eps)
        return CriterionOutput(losses, chosen.detach(), rejected.detach())
