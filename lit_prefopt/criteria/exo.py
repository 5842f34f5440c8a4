"""EXO, pairwise (Ji et al., 2024, "Towards Efficient Exact Optimization of LM Alignment").

With m = beta * D and a smoothed label distribution (1 - eps, eps) over (chosen wins, rejected
wins), the loss is the reverse KL from the model's pair distribution (sig(m), sig(-m)) to it:
sig(m) (log sig(m) - log(1 - eps)) + sig(-m) (log sig(-m) - log eps). It is mode-seeking where
DPO's forward KL is mean-seeking; eps > 0 keeps the target finite (the paper uses 1e-3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion


class EXOPair(RewardCriterion):
    """`criterion=exo_pair`: defaults beta 0.1, label_smoothing (eps) 1e-3."""

    def __init__(self, beta: float = 0.1, label_smoothing: float = 1e-3, nll_scale: float = 0.0) -> None:
        super().__init__(beta, nll_scale)
        if not 0.0 < label_smoothing < 0.5:
            raise ValueError(f"criterion.label_smoothing must be in (0, 0.5), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = self.rewards(logps)
        margin = chosen - rejected
        eps = self.label_smoothing
        losses = torch.sigmoid(margin) * (F.logsigmoid(margin) - math.log(1 - eps)) + torch.sigmoid(-margin) * (
            F.logsigmoid(-margin) - math.log(eps)
        )
        return CriterionOutput(losses, chosen.detach(), rejected.detach())
