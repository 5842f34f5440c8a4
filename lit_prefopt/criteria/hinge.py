"""Hinge loss of RSO (Liu et al., 2023, "Statistical rejection sampling"), with a reference.

loss = relu(1 - beta * D): SLiC's hinge on the DPO margin; pairs stop contributing once the
margin reaches 1/beta nats.
"""

from __future__ import annotations

import torch

from lit_prefopt.criteria.base import Criterion, CriterionOutput, PairLogps, require_positive
from lit_prefopt.criteria.reference_margin import implicit_rewards


class Hinge(Criterion):
    """`criterion=hinge`: default beta 0.1."""

    needs_reference = True
    reduction = "sum"

    def __init__(self, beta: float = 0.1, nll_scale: float = 0.0) -> None:
        super().__init__(nll_scale)
        self.beta = require_positive("criterion.beta", beta)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = implicit_rewards(logps, self.beta)
        return CriterionOutput(torch.relu(1.0 - (chosen - rejected)), chosen.detach(), rejected.detach())
