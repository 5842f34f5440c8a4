"""SLiC-HF (Zhao et al., 2023, "Calibrating Sequence Likelihood Improves..."), the original.

loss = max(0, delta - (s_w - s_l)) + lambda * NLL: a rank-calibration hinge on summed policy
log-probs with margin delta, no reference model, plus the paper's cross-entropy regularizer on
the preferred (SFT) target, which here is the module's NLL term on the chosen completion
(`nll_scale`, lambda). The paper uses delta = 1; its regularization weight is tuned per task,
we default to 0.5. Rewards are the summed log-probs themselves (beta = 1).
"""

from __future__ import annotations

import torch

from lit_prefopt.criteria.base import Criterion, CriterionOutput, PairLogps, as_float32, require_positive


class SLiC(Criterion):
    """`criterion=slic`: defaults delta 1.0, nll_scale 0.5."""

    needs_reference = False
    reduction = "sum"

    def __init__(self, delta: float = 1.0, nll_scale: float = 0.5) -> None:
        super().__init__(nll_scale)
        self.delta = require_positive("criterion.delta", delta)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = as_float32(logps.chosen, logps.rejected)
        losses = torch.relu(self.delta - (chosen - rejected))
        return CriterionOutput(losses, chosen.detach(), rejected.detach())
