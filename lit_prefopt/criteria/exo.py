"""EXO, pairwise (Ji et al., 2024, "Towards Efficient Exact Optimization of Language Model
Alignment").

With m = beta * D, the model's distribution over which of the two completions wins is
(sig(m), sig(-m)); the labels, smoothed by eps, give (1 - eps, eps). The loss is the reverse KL
from the first to the second:
sig(m) (log sig(m) - log(1 - eps)) + sig(-m) (log sig(-m) - log eps).
Reverse KL is mode-seeking where DPO's forward KL (cross-entropy) is mean-seeking; eps > 0 keeps
log eps finite (the paper's pairwise setting uses 1e-3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.config_values import require_number
from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion, implicit_rewards


def exo_pair_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
    label_smoothing: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair EXO losses and rewards beta * (s - s_ref)."""
    chosen, rejected = implicit_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    margin = chosen - rejected
    eps = label_smoothing
    losses = torch.sigmoid(margin) * (F.logsigmoid(margin) - math.log1p(-eps)) + torch.sigmoid(-margin) * (
        F.logsigmoid(-margin) - math.log(eps)
    )
    return losses, chosen.detach(), rejected.detach()


class EXOPair(RewardCriterion):
    """`criterion=exo_pair`: defaults beta 0.1, label_smoothing (eps) 1e-3."""

    def __init__(self, beta: float = 0.1, label_smoothing: float = 1e-3, nll_scale: float = 0.0) -> None:
        super().__init__(beta, nll_scale)
        self.label_smoothing = require_number(
            "criterion.label_smoothing", label_smoothing, 0.0, 0.5, low_inclusive=False, high_inclusive=False
        )

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*exo_pair_loss(*self.inputs(logps), self.beta, self.label_smoothing))
