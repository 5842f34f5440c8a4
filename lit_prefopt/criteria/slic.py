"""SLiC-HF (Zhao et al., 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback"),
the original form: no reference model.

loss = max(0, delta - (s_w - s_l)) + lambda * NLL: a rank-calibration hinge on the policy's
summed log-probs, plus the paper's cross-entropy regularizer on the preferred (SFT) target.
Here the regularizer is the module's NLL term on the chosen completion with weight `nll_scale`
(the paper's lambda), so it is on by default (0.5); note the module's NLL is per token, where the
paper's is per sequence. The paper's margin is delta = 1. Rewards are the summed log-probs
themselves (the term the hinge compares).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_prefopt.criteria.base import Criterion, CriterionOutput, PairLogps, as_float32, require_positive


def slic_loss(policy_chosen: Tensor, policy_rejected: Tensor, delta: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair calibration hinge relu(delta - (s_w - s_l)) and rewards s (the summed log-probs)."""
    chosen, rejected = as_float32(policy_chosen, policy_rejected)
    return torch.relu(delta - (chosen - rejected)), chosen.detach(), rejected.detach()


class SLiC(Criterion):
    """`criterion=slic_hf`: defaults delta 1.0, nll_scale (lambda) 0.5."""

    needs_reference = False
    reduction = "sum"

    def __init__(self, delta: float = 1.0, nll_scale: float = 0.5) -> None:
        super().__init__(nll_scale)
        self.delta = require_positive("criterion.delta", delta)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*slic_loss(*logps.reduced(self.reduction), self.delta))
