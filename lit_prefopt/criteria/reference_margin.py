"""What every reference-based criterion starts from: log-ratios and implicit rewards.

log pi/pi_ref of the chosen and of the rejected completion, and the implicit rewards
r = beta * log pi/pi_ref whose difference is DPO's margin beta * D. Kept in one place so the
loss functions of IPO, hinge, NCA, APO, ... never restate them, and `RewardCriterion` holds the
`beta` and the reference plumbing their classes share.
"""

from __future__ import annotations

from torch import Tensor

from lit_prefopt.criteria.base import (
    Criterion,
    CriterionOutput,
    LogprobReduction,
    PairLogps,
    as_float32,
    require_positive,
)


def log_ratios(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor
) -> tuple[Tensor, Tensor]:
    """(log pi/pi_ref of the chosen, of the rejected), in float32 whatever the input dtype."""
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = as_float32(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected
    )
    return policy_chosen - ref_chosen, policy_rejected - ref_rejected


def implicit_rewards(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float
) -> tuple[Tensor, Tensor]:
    """(r_w, r_l) = beta * log-ratios, float32 and with gradient (detach them for logging)."""
    chosen, rejected = log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return beta * chosen, beta * rejected


class RewardCriterion(Criterion):
    """Base of the criteria defined on r = beta * log pi/pi_ref: a reference and a `beta`."""

    needs_reference = True
    reduction: LogprobReduction = "sum"

    def __init__(self, beta: float = 0.1, nll_scale: float = 0.0) -> None:
        super().__init__(nll_scale)
        self.beta = require_positive("criterion.beta", beta)

    def inputs(self, logps: PairLogps) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(policy chosen, policy rejected, reference chosen, reference rejected) log-probs, summed
        or averaged per this criterion's `reduction`: the first arguments of its loss function."""
        return (*logps.reduced(self.reduction), *logps.reference_reduced(self.reduction))

    def with_summed_rewards(self, losses: Tensor, logps: PairLogps) -> CriterionOutput:
        """`losses` with the rewards every reference criterion logs, beta * (s - s_ref) over
        *summed* log-probs (docs/ARCHITECTURE.md#log-probs-and-loss-conventions, as TRL logs them), also when the loss itself is
        length-normalized (IPO, LN-DPO), so dashboards compare across criteria."""
        chosen, rejected = implicit_rewards(*logps.reduced("sum"), *logps.reference_reduced("sum"), self.beta)
        return CriterionOutput(losses, chosen.detach(), rejected.detach())
