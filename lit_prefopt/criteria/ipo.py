"""IPO (Azar et al., 2023): a squared loss that keeps the log-ratio margin at 1/(2 beta).

loss = (D_avg - 1/(2 beta))^2, D_avg from per-token *average* log-probs: the paper's D uses
sums, but its authors confirmed the length-normalized form (TRL uses it too); we follow that, as
DESIGN.md section 4 fixes. Rewards are beta times the average log-ratios.
"""

from __future__ import annotations

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion, log_ratios


class IPO(RewardCriterion):
    """`criterion=ipo`: default beta 0.1 (target margin 1/(2 beta) = 5 nats per token)."""

    reduction = "avg"

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = log_ratios(logps, self.reduction)
        losses = (chosen - rejected - 1.0 / (2.0 * self.beta)) ** 2
        return CriterionOutput(losses, (self.beta * chosen).detach(), (self.beta * rejected).detach())
