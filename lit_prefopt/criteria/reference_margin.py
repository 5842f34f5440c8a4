"""What every reference-based criterion starts from: implicit rewards and their margin.

r = beta * (log pi(y|x) - log pi_ref(y|x)) for chosen and rejected, over summed or per-token
average log-probs, and the margin beta * D = r_w - r_l. Kept in one place so IPO, hinge, NCA,
APO, ... never restate it.
"""

from __future__ import annotations

from torch import Tensor

from lit_prefopt.criteria.base import Criterion, LogprobReduction, PairLogps, as_float32, require_positive


def log_ratios(logps: PairLogps, reduction: LogprobReduction = "sum") -> tuple[Tensor, Tensor]:
    """(log pi/pi_ref of the chosen, of the rejected), float32."""
    chosen, rejected = logps.reduced(reduction)
    ref_chosen, ref_rejected = logps.reference_reduced(reduction)
    chosen, rejected, ref_chosen, ref_rejected = as_float32(chosen, rejected, ref_chosen, ref_rejected)
    return chosen - ref_chosen, rejected - ref_rejected


def implicit_rewards(logps: PairLogps, beta: float, reduction: LogprobReduction = "sum") -> tuple[Tensor, Tensor]:
    """(r_w, r_l) = beta * log-ratios, with gradient (detach for logging)."""
    chosen, rejected = log_ratios(logps, reduction)
    return beta * chosen, beta * rejected


class RewardCriterion(Criterion):
    """Base of the criteria defined on r = beta * log pi/pi_ref: a reference and a `beta`."""

    needs_reference = True
    reduction: LogprobReduction = "sum"

    def __init__(self, beta: float = 0.1, nll_scale: float = 0.0) -> None:
        super().__init__(nll_scale)
        self.beta = require_positive("criterion.beta", beta)

    def rewards(self, logps: PairLogps) -> tuple[Tensor, Tensor]:
        """(r_w, r_l) over this criterion's reduction, with gradient."""
        return implicit_rewards(logps, self.beta, self.reduction)
