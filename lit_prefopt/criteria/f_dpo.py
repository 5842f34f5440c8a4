"""f-DPO (Wang et al., 2024, "Beyond Reverse KL: Generalizing Direct Preference Optimization
with Diverse Divergence Constraints"): DPO with the reverse KL swapped for another f-divergence.

With u = pi/pi_ref (log u = the summed log-ratio), loss = -log sig(beta (f'(u_w) - f'(u_l))):
- `reverse_kl`: f(u) = u log u, f'(u) = log u + 1: plain DPO;
- `forward_kl`: f(u) = -log u, f'(u) = -1/u = -exp(-log u);
- `js` (Jensen-Shannon): f'(u) = log(2u / (1 + u)) = log 2 + log u - softplus(log u);
- `alpha` (alpha-divergence, 0 < alpha < 1): f'(u) = (1 - u^-alpha) / alpha, the paper's
  parametrization (alpha -> 0 is reverse KL, alpha = 1 forward KL); TRL's
  `f_alpha_divergence_coef` is 1 - alpha (the two coincide at the default 0.5).
Additive constants cancel in the difference and are dropped. Exponents are clamped to 80 so an
extreme log-ratio gives a large finite loss instead of inf - inf. Rewards stay beta * log u, as
for DPO, so dashboards compare across divergences.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.config_values import require_number
from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion, log_ratios

EXPONENT_LIMIT = 80.0


def capped_exp(x: Tensor) -> Tensor:
    """exp(x) with x clamped to EXPONENT_LIMIT: finite in float32 (exp(80) ~ 5.5e34)."""
    return torch.exp(x.clamp(max=EXPONENT_LIMIT))


# f'(u) up to an additive constant, as a function of log u (and alpha, used by `alpha` only).
F_PRIMES: dict[str, Callable[[Tensor, float], Tensor]] = {
    "reverse_kl": lambda log_u, alpha: log_u,
    "forward_kl": lambda log_u, alpha: -capped_exp(-log_u),
    "js": lambda log_u, alpha: log_u - F.softplus(log_u),
    "alpha": lambda log_u, alpha: -capped_exp(-alpha * log_u) / alpha,
}


def f_dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
    divergence: str = "reverse_kl",
    alpha: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair f-DPO losses under `divergence` and rewards beta * (s - s_ref)."""
    chosen, rejected = log_ratios(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    f_prime = F_PRIMES[divergence]
    losses = -F.logsigmoid(beta * (f_prime(chosen, alpha) - f_prime(rejected, alpha)))
    return losses, (beta * chosen).detach(), (beta * rejected).detach()


class FDivergenceDPO(RewardCriterion):
    """`criterion=f_dpo` (`divergence` reverse_kl|forward_kl|js|alpha): defaults js, beta 0.1, alpha 0.5."""

    def __init__(self, divergence: str = "js", beta: float = 0.1, alpha: float = 0.5, nll_scale: float = 0.0) -> None:
        super().__init__(beta, nll_scale)
        if divergence not in F_PRIMES:
            raise ValueError(f"criterion.divergence must be one of {sorted(F_PRIMES)}, got {divergence!r}")
        bounds = (0.0, 1.0) if divergence == "alpha" else (-math.inf, math.inf)  # only the alpha-divergence reads it
        self.divergence = divergence
        self.alpha = require_number("criterion.alpha", alpha, *bounds, low_inclusive=False, high_inclusive=False)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*f_dpo_loss(*self.inputs(logps), self.beta, self.divergence, self.alpha))
