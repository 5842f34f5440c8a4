"""DPO-Positive (DPOP; Pal et al., 2024, "Smaug") as a lit_prefopt criterion.

Per pair: -log sigmoid(beta * (D - dpop_lambda * max(0, s_w^ref - s_w))), with
D = (s_w - s_w^ref) - (s_l - s_l^ref) over summed completion log-probs. DPO's loss sees only
the difference D, so it can fall while the chosen completion becomes less likely than under the
reference (the rejected one just falls faster); on pairs that differ in a few tokens this is
what happens. The penalty is zero while s_w >= s_w^ref and otherwise costs dpop_lambda nats of
margin per nat the chosen completion has lost, which keeps s_w above the reference's.

dpop_lambda defaults to 50, the value the paper trains with: large on purpose, so that any drop
of s_w below s_w^ref outweighs the margin gained by pushing s_l down. 0 gives plain DPO.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.criteria.base import (
    Criterion,
    CriterionOutput,
    PairLogps,
    as_float32,
    require_non_negative,
    require_positive,
)


def dpop_losses(chosen_logratio: Tensor, rejected_logratio: Tensor, beta: float, dpop_lambda: float) -> Tensor:
    """Per-pair DPOP losses from the log-ratios s - s_ref of the chosen and rejected completions."""
    chosen_drop = torch.relu(-chosen_logratio)  # max(0, s_w^ref - s_w)
    return -F.logsigmoid(beta * (chosen_logratio - rejected_logratio - dpop_lambda * chosen_drop))


class DPOPCriterion(Criterion):
    """DPOP with inverse temperature `beta` and penalty weight `dpop_lambda`."""

    needs_reference = True
    reduction = "sum"

    def __init__(self, beta: float = 0.1, dpop_lambda: float = 50.0, nll_scale: float = 0.0) -> None:
        super().__init__(nll_scale=nll_scale)
        self.beta = require_positive("criterion.beta", beta)
        self.dpop_lambda = require_non_negative("criterion.dpop_lambda", dpop_lambda)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = as_float32(*logps.reduced(self.reduction))
        ref_chosen, ref_rejected = as_float32(*logps.reference_reduced(self.reduction))
        chosen_logratio, rejected_logratio = chosen - ref_chosen, rejected - ref_rejected
        return CriterionOutput(
            losses=dpop_losses(chosen_logratio, rejected_logratio, self.beta, self.dpop_lambda),
            chosen_rewards=(self.beta * chosen_logratio).detach(),
            rejected_rewards=(self.beta * rejected_logratio).detach(),
        )
