"""SPPO with hard labels (Wu et al., 2024, "Self-Play Preference Optimization").

loss = (log pi/pi_ref(y_w) - 1/(2 beta))^2 + (log pi/pi_ref(y_l) + 1/(2 beta))^2: the paper's
square loss with win probabilities 1 and 0 and eta = 1/beta, pushing the chosen log-ratio up to
+eta/2 and the rejected down to -eta/2 independently.
"""

from __future__ import annotations

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion, log_ratios


class SPPOHard(RewardCriterion):
    """`criterion=sppo_hard`: default beta 0.1 (targets +-5 nats)."""

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = log_ratios(logps)
        target = 1.0 / (2.0 * self.beta)
        losses = (chosen - target) ** 2 + (rejected + target) ** 2
        return CriterionOutput(losses, (self.beta * chosen).detach(), (self.beta * rejected).detach())
