"""f-DPO (Wang et al., 2023, "Beyond Reverse KL"): DPO under other f-divergences.

With u = pi/pi_ref (so log u = the summed log-ratio) the loss is -log sig(beta (f'(u_w) - f'(u_l))):
- `reverse_kl`: f'(u) = log u + 1, which is plain DPO;
- `forward_kl`: f'(u) = -1/u = -exp(-log u);
- `js` (Jensen-Shannon): f'(u) = log(2u / (1 + u)) = log 2 + log u - softplus(log u);
- `alpha` (alpha-divergence, 0 < alpha < 1): f'(u) = (1 - u^-alpha) / alpha.
Constant terms cancel in the difference. Exponents are clamped to +-80 so extreme log-ratios
give large finite losses instead of inf - inf. Rewards are beta * log u (as for DPO) so
dashboards compare across divergences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion, log_ratios

DIVERGENCES = ("reverse_kl", "forward_kl", "js", "alpha")
EXPONENT_LIMIT = 80.0


def f_prime_of_log_ratio(log_u: Tensor, divergence: str, alpha: float) -> Tensor:
    """f'(u) up to an additive constant, as a function of log u."""
    if divergence == "reverse_kl":
        return log_u
    if divergence == "forward_kl":
        return -torch.exp((-log_u).clamp(max=EXPONENT_LIMIT))
    if divergence == "js":
        return log_u - F.softplus(log_u)
    return -torch.exp((-alpha * log_u).clamp(max=EXPONENT_LIMIT)) / alpha


class FDivergenceDPO(RewardCriterion):
    """`criterion=f_dpo criterion.divergence=js|forward_kl|alpha|reverse_kl`: defaults beta 0.1, alpha 0.5."""

    def __init__(self, divergence: str = "js", beta: float = 0.1, alpha: float = 0.5, nll_scale: float = 0.0) -> None:
        super().__init__(beta, nll_scale)
        if divergence not in DIVERGENCES:
            raise ValueError(f"criterion.divergence must be one of {DIVERGENCES}, got {divergence!r}")
        if divergence == "alpha" and not 0.0 < alpha < 1.0:
            raise ValueError(f"criterion.alpha must be in (0, 1), got {alpha}")
        self.divergence = divergence
        self.alpha = float(alpha)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = log_ratios(logps)
        f_chosen = f_prime_of_log_ratio(chosen, self.divergence, self.alpha)
        f_rejected = f_prime_of_log_ratio(rejected, self.divergence, self.alpha)
        losses = -F.logsigmoid(self.beta * (f_chosen - f_rejected))
        return CriterionOutput(losses, (self.beta * chosen).detach(), (self.beta * rejected).detach())
