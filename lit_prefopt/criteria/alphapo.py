"""AlphaPO (Gupta et al., 2025, "AlphaPO: Reward Shape Matters for LLM Alignment"): SimPO with an
alpha-shaped reward.

r(y) = (beta / alpha) (1 - p(y)^(-alpha / |y|)) = (beta / alpha) (1 - exp(-alpha a)), a the
per-token average log-prob; loss = -log sig(r_w - r_l - gamma). As alpha -> 0, r -> beta * a,
SimPO's reward (used exactly at alpha = 0). gamma is given as in SimPO, absolutely or as
gamma_beta_ratio. TRL writes the same loss as -log sig(beta (r'_w - r'_l - gamma_beta_ratio))
with r' = r / beta. The exponent is clamped to 80 so very unlikely completions stay finite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.config_values import require_number
from lit_prefopt.criteria.base import CriterionOutput, PairLogps, as_float32
from lit_prefopt.criteria.simpo import SimPO

EXPONENT_LIMIT = 80.0


def alpha_reward(avg_logp: Tensor, beta: float, alpha: float) -> Tensor:
    """(beta / alpha) (1 - exp(-alpha a)), or beta * a at alpha = 0."""
    if alpha == 0.0:
        return beta * avg_logp
    return beta / alpha * (1.0 - torch.exp((-alpha * avg_logp).clamp(max=EXPONENT_LIMIT)))


def alphapo_loss(
    policy_chosen_avg: Tensor, policy_rejected_avg: Tensor, beta: float, alpha: float, gamma: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair AlphaPO losses and the alpha-shaped rewards, from per-token average log-probs."""
    chosen, rejected = as_float32(policy_chosen_avg, policy_rejected_avg)
    chosen_rewards = alpha_reward(chosen, beta, alpha)
    rejected_rewards = alpha_reward(rejected, beta, alpha)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


class AlphaPO(SimPO):
    """`criterion=alphapo`: defaults alpha 0.25, beta 2.0, gamma_beta_ratio 0.25 (SimPO's knobs)."""

    def __init__(
        self,
        alpha: float = 0.25,
        beta: float = 2.0,
        gamma: float | None = None,
        gamma_beta_ratio: float | None = None,
        nll_scale: float = 0.0,
    ) -> None:
        super().__init__(beta=beta, gamma=gamma, gamma_beta_ratio=gamma_beta_ratio, nll_scale=nll_scale)
        self.alpha = require_number("criterion.alpha", alpha)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*alphapo_loss(*logps.reduced(self.reduction), self.beta, self.alpha, self.gamma))
