"""DiscoPOP (Lu et al., 2024, "Discovering Preference Optimization Algorithms with and for LLMs").

The log-ratio modulated loss the paper discovered: with m = beta * D and mix = sig(m / tau),
loss = (1 - mix) * -log sig(m) + mix * exp(-m): logistic (DPO) for negative margins, blending
into an exponential loss as the margin grows. tau = 0.05 as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_prefopt.criteria.base import CriterionOutput, PairLogps, require_positive
from lit_prefopt.criteria.reference_margin import RewardCriterion

# exp(-m) for m below this would overflow float32; sig(m / tau) is ~0 there, so clamping the
# exponent changes nothing but keeps 0 * inf from turning into NaN.
MIN_MARGIN = -80.0


class DiscoPOP(RewardCriterion):
    """`criterion=discopop`: defaults beta 0.05, tau 0.05."""

    def __init__(self, beta: float = 0.05, tau: float = 0.05, nll_scale: float = 0.0) -> None:
        super().__init__(beta, nll_scale)
        self.tau = require_positive("criterion.tau", tau)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = self.rewards(logps)
        margin = chosen - rejected
        mix = torch.sigmoid(margin / self.tau)
        losses = (1 - mix) * -F.logsigmoid(margin) + mix * torch.exp(-margin.clamp(min=MIN_MARGIN))
        return CriterionOutput(losses, chosen.detach(), rejected.detach())
