"""SPPO with hard labels (Wu et al., 2024, "Self-Play Preference Optimization for Language Model
Alignment").

loss = (log pi/pi_ref(y_w) - 1/(2 beta))^2 + (log pi/pi_ref(y_l) + 1/(2 beta))^2: the paper's
square loss (log ratio - eta (P(y wins) - 1/2))^2 with win probabilities 1 and 0 and
eta = 1/beta. Each log-ratio is pushed to its own target, +-1/(2 beta), independently.
"""

from __future__ import annotations

from torch import Tensor

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion, log_ratios


def sppo_hard_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair SPPO (hard) losses and rewards beta * (s - s_ref)."""
    chosen, rejected = log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    target = 1.0 / (2.0 * beta)
    losses = (chosen - target) ** 2 + (rejected + target) ** 2
    return losses, (beta * chosen).detach(), (beta * rejected).detach()


class SPPOHard(RewardCriterion):
    """`criterion=sppo_hard`: default beta 0.1 (targets +-5 nats)."""

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*sppo_hard_loss(*self.inputs(logps), self.beta))
