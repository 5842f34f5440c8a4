"""SLiC-HF's rank calibration loss (Zhao et al., 2023) as a lit_prefopt criterion.

Per pair: max(0, delta - (s_w - s_l)), with s_w and s_l the policy's summed log-probs of the
chosen and rejected completions. A pair stops contributing once the chosen completion is
`delta` nats more likely than the rejected one; no reference model is involved.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_prefopt.criteria.base import Criterion, CriterionOutput, PairLogps, as_float32, require_positive


def slic_losses(chosen: Tensor, rejected: Tensor, delta: float) -> Tensor:
    """Per-pair hinge on the log-prob margin: relu(delta - (chosen - rejected))."""
    return torch.relu(delta - (chosen - rejected))


class SLiCCriterion(Criterion):
    """SLiC-HF calibration with margin `delta`; `nll_scale` adds its cross-entropy regularizer."""

    needs_reference = False
    reduction = "sum"

    def __init__(self, delta: float = 1.0, nll_scale: float = 0.0) -> None:
        super().__init__(nll_scale=nll_scale)
        self.delta = require_positive("criterion.delta", delta)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = as_float32(*logps.reduced(self.reduction))
        return CriterionOutput(
            losses=slic_losses(chosen, rejected, self.delta),
            chosen_rewards=chosen.detach(),
            rejected_rewards=rejected.detach(),
        )
