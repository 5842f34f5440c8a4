"""Anchored Preference Optimization (D'Oosterlinck et al., 2024, "Anchored Preference
Optimization and Contrastive Revisions"), both anchors, with r = beta * log pi/pi_ref.

- APO-zero: loss = (1 - sig(r_w)) + sig(r_l): raise the chosen likelihood, lower the rejected;
  for pairs whose chosen answer is better than what the model writes now.
- APO-down: loss = sig(r_w) + (1 - sig(r_w - r_l)): lower both, the rejected more; for pairs
  whose chosen answer is worse than what the model writes now.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion, implicit_rewards


def apo_zero_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair APO-zero losses and rewards beta * (s - s_ref)."""
    chosen, rejected = implicit_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    losses = (1 - torch.sigmoid(chosen)) + torch.sigmoid(rejected)
    return losses, chosen.detach(), rejected.detach()


def apo_down_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair APO-down losses and rewards beta * (s - s_ref)."""
    chosen, rejected = implicit_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    losses = torch.sigmoid(chosen) + (1 - torch.sigmoid(chosen - rejected))
    return losses, chosen.detach(), rejected.detach()


ANCHORS: dict[str, Callable[..., tuple[Tensor, Tensor, Tensor]]] = {"zero": apo_zero_loss, "down": apo_down_loss}


class APO(RewardCriterion):
    """`criterion=apo_zero` / `criterion=apo_down` (`anchor`): default beta 0.1."""

    def __init__(self, anchor: str = "zero", beta: float = 0.1, nll_scale: float = 0.0) -> None:
        super().__init__(beta, nll_scale)
        if anchor not in ANCHORS:
            raise ValueError(f"criterion.anchor must be one of {sorted(ANCHORS)}, got {anchor!r}")
        self.anchor = anchor

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*ANCHORS[self.anchor](*self.inputs(logps), self.beta))
