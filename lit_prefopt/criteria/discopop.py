"""DiscoPOP (Lu et al., 2024, "Discovering Preference Optimization Algorithms with and for Large
Language Models"): the log-ratio modulated loss the paper discovered.

With m = beta * D and mix = sig(m / tau): loss = (1 - mix) (-log sig(m)) + mix exp(-m), i.e.
DPO's logistic loss for negative margins blending into an exponential loss as the margin grows.
Defaults beta 0.05 and tau 0.05 are the paper's (TRL's `discopop` is the same loss). The loss is
not convex and, in a band around m = 0 (about -0.11 < m < 0.07 at tau 0.05), it rises with the
margin: at initialization (m = 0) its gradient pushes the margin slightly negative, and pairs
learn in the DPO direction once |m| leaves the band. That is the published function, kept as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.criteria.base import CriterionOutput, PairLogps, require_positive
from lit_prefopt.criteria.reference_margin import RewardCriterion, implicit_rewards

# exp(-m) for m below this overflows float32; mix = sig(m / tau) is ~0 there, so clamping the
# exponent changes nothing but keeps 0 * inf from turning into NaN.
MIN_MARGIN = -80.0


def discopop_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float, tau: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair DiscoPOP losses and rewards beta * (s - s_ref)."""
    chosen, rejected = implicit_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    margin = chosen - rejected
    mix = torch.sigmoid(margin / tau)
    losses = (1 - mix) * -F.logsigmoid(margin) + mix * torch.exp(-margin.clamp(min=MIN_MARGIN))
    return losses, chosen.detach(), rejected.detach()


class DiscoPOP(RewardCriterion):
    """`criterion=discopop`: defaults beta 0.05, tau 0.05."""

    def __init__(self, beta: float = 0.05, tau: float = 0.05, nll_scale: float = 0.0) -> None:
        super().__init__(beta, nll_scale)
        self.tau = require_positive("criterion.tau", tau)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*discopop_loss(*self.inputs(logps), self.beta, self.tau))
