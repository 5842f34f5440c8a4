"""Anchored Preference Optimization (D'Oosterlinck et al., 2024), both anchors.

With r = beta * log pi/pi_ref:
- `zero` (APO-zero): loss = (1 - sig(r_w)) + sig(r_l): raise the chosen, lower the rejected
  likelihood; for pairs whose chosen answer is better than the model's own outputs.
- `down` (APO-down): loss = sig(r_w) + (1 - sig(r_w - r_l)): lower both, the rejected more;
  for pairs whose chosen answer is worse than the model's own outputs.
"""

from __future__ import annotations

import torch

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion

ANCHORS = ("zero", "down")


class APO(RewardCriterion):
    """`criterion=apo_zero` / `criterion=apo_down`: default beta 0.1."""

    def __init__(self, anchor: str = "zero", beta: float = 0.1, nll_scale: float = 0.0) -> None:
        super().__init__(beta, nll_scale)
        if anchor not in ANCHORS:
            raise ValueError(f"criterion.anchor must be one of {ANCHORS}, got {anchor!r}")
        self.anchor = anchor

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = self.rewards(logps)
        if self.anchor == "zero":
            losses = (1 - torch.sigmoid(chosen)) + torch.sigmoid(rejected)
        else:
            losses = torch.sigmoid(chosen) + (1 - torch.sigmoid(chosen - rejected))
        return CriterionOutput(losses, chosen.detach(), rejected.detach())
