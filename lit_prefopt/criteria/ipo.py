"""IPO (Azar et al., 2023, "A General Theoretical Paradigm to Understand Learning from Human
Preferences"): a squared loss that holds the log-ratio margin at 1/(2 beta).

loss = (D_avg - 1/(2 beta))^2 with D_avg from per-token *average* log-probs. The paper writes D
over summed log-probs; its authors confirmed the length-normalized form, which TRL uses, so the target margin is 1/(2 beta) nats per token. The logged rewards
are those of every reference criterion, beta * (s - s_ref) over summed log-probs (docs/ARCHITECTURE.md#log-probs-and-loss-conventions,
as TRL logs IPO's).
"""

from __future__ import annotations

from torch import Tensor

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion, log_ratios


def ipo_loss(
    policy_chosen_avg: Tensor,
    policy_rejected_avg: Tensor,
    ref_chosen_avg: Tensor,
    ref_rejected_avg: Tensor,
    beta: float,
) -> Tensor:
    """Per-pair IPO losses from per-token average log-probs."""
    chosen, rejected = log_ratios(policy_chosen_avg, policy_rejected_avg, ref_chosen_avg, ref_rejected_avg)
    return (chosen - rejected - 1.0 / (2.0 * beta)) ** 2


class IPO(RewardCriterion):
    """`criterion=ipo`: default beta 0.1 (target margin 5 nats per token)."""

    reduction = "avg"

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return self.with_summed_rewards(ipo_loss(*self.inputs(logps), self.beta), logps)
