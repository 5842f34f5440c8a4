"""Hinge loss of RSO (Liu et al., 2023, "Statistical rejection sampling"), with a reference.

loss = relu(1 - beta * D): SLiC's hinge on the DPO margin; pairs stop contributing once the
margin reaches 1/beta nats.
"""

from __future__ import annotations

import torch

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion


class Hinge(RewardCriterion):
    """`criterion=hinge`: default beta 0.1."""

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = self.rewards(logps)
        return CriterionOutput(torch.relu(1.0 - (chosen - rejected)), chosen.detach(), rejected.detach())
