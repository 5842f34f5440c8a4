"""NCA, pairwise (Chen et al., 2024, "Noise Contrastive Alignment of Language Models").

loss = -log sig(r_w) - 1/2 log sig(-r_w) - 1/2 log sig(-r_l), r = beta * log pi/pi_ref. Unlike
DPO, which only widens the margin, NCA's absolute terms push the chosen reward up, so the chosen
likelihood does not fall along with the rejected one.
"""

from __future__ import annotations

import torch.nn.functional as F

from lit_prefopt.criteria.base import Criterion, CriterionOutput, PairLogps, require_positive
from lit_prefopt.criteria.reference_margin import implicit_rewards


class NCAPair(Criterion):
    """`criterion=nca_pair`: default beta 0.1."""

    needs_reference = True
    reduction = "sum"

    def __init__(self, beta: float = 0.1, nll_scale: float = 0.0) -> None:
        super().__init__(nll_scale)
        self.beta = require_positive("criterion.beta", beta)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = implicit_rewards(logps, self.beta)
        losses = -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)
        return CriterionOutput(losses, chosen.detach(), rejected.detach())
