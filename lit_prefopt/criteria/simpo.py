"""SimPO (Meng et al., 2024, "SimPO: Simple Preference Optimization with a Reference-Free
Reward"): reference-free, length-normalized, with a target reward margin.

loss = -log sig(beta (a_w - a_l) - gamma), a the per-token average log-prob. The paper states
gamma; the SimPO authors' code and TRL tune it through gamma_beta_ratio = gamma / beta. Either
knob may be set, not both (neither: ratio 0.25, so gamma 0.5 at beta 2).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.criteria.base import (
    Criterion,
    CriterionOutput,
    PairLogps,
    as_float32,
    require_non_negative,
    require_positive,
)

# The SimPO authors' recommended starting point (gamma 0.5 at beta 2).
DEFAULT_GAMMA_BETA_RATIO = 0.25


def simpo_loss(
    policy_chosen_avg: Tensor, policy_rejected_avg: Tensor, beta: float, gamma: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair SimPO losses and rewards beta * a."""
    chosen, rejected = as_float32(policy_chosen_avg, policy_rejected_avg)
    chosen_rewards = beta * chosen
    rejected_rewards = beta * rejected
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


class SimPO(Criterion):
    """`criterion=simpo`: defaults beta 2.0, gamma_beta_ratio 0.25 (gamma 0.5)."""

    needs_reference = False
    reduction = "avg"

    def __init__(
        self,
        beta: float = 2.0,
        gamma: float | None = None,
        gamma_beta_ratio: float | None = None,
        nll_scale: float = 0.0,
    ) -> None:
        super().__init__(nll_scale)
        self.beta = require_positive("criterion.beta", beta)
        if gamma is not None and gamma_beta_ratio is not None:
            raise ValueError(
                f"set criterion.gamma or criterion.gamma_beta_ratio, not both (got {gamma} and {gamma_beta_ratio}); "
                "leave one of them null"
            )
        if gamma is None:
            ratio = DEFAULT_GAMMA_BETA_RATIO if gamma_beta_ratio is None else gamma_beta_ratio
            gamma = require_non_negative("criterion.gamma_beta_ratio", ratio) * self.beta
        self.gamma = require_non_negative("criterion.gamma", gamma)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*simpo_loss(*logps.reduced(self.reduction), self.beta, self.gamma))
