"""NCA, pairwise (Chen et al., 2024, "Noise Contrastive Alignment of Language Models with
Explicit Rewards").

loss = -log sig(r_w) - 1/2 log sig(-r_w) - 1/2 log sig(-r_l), r = beta * log pi/pi_ref: the
paper's NCA with K = 2 responses, the 1/K term over both. DPO only widens the margin; NCA's
absolute term on r_w pushes the chosen reward up, so the chosen likelihood does not fall along
with the rejected one.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion, implicit_rewards


def nca_pair_loss(
    policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair NCA losses and rewards beta * (s - s_ref)."""
    chosen, rejected = implicit_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    losses = -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)
    return losses, chosen.detach(), rejected.detach()


class NCAPair(RewardCriterion):
    """`criterion=nca_pair`: default beta 0.1."""

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*nca_pair_loss(*self.inputs(logps), self.beta))
