"""NCA, pairwise (Chen et al., 2024, "Noise Contrastive Alignment of Language Models").

loss = -log sig(r_w) - 1/2 log sig(-r_w) - 1/2 log sig(-r_l), r = beta * log pi/pi_ref. Unlike
DPO, which only widens the margin, NCA's absolute terms push the chosen reward up, so the chosen
likelihood does not fall along with the rejected one.
"""

from __future__ import annotations

import torch.nn.functional as F

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion


class NCAPair(RewardCriterion):
    """`criterion=nca_pair`: default beta 0.1."""

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = self.rewards(logps)
        losses = -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)
        return CriterionOutput(losses, chosen.detach(), rejected.detach())
