"""DPO (Rafailov et al., 2023, "Direct Preference Optimization"), with cDPO label smoothing.

loss = -(1 - eps) log sig(beta D) - eps log sig(-beta D), with
D = (s_w - s_w^ref) - (s_l - s_l^ref) over summed completion log-probs, or per-token averages
when `length_normalization` (length-normalized DPO, `criterion=ln_dpo`). eps = 0 is plain DPO;
eps > 0 is conservative DPO (Mitchell, 2023, "A note on DPO with noisy preferences"), the
cross-entropy against labels that are flipped with probability eps (`criterion=cdpo`).
The logged rewards are beta * (s - s_ref) over summed log-probs in both forms
(docs/ARCHITECTURE.md#log-probs-and-loss-conventions).
RPO (Pang et al., 2024) is this loss plus nll_scale * NLL_w (`criterion=rpo`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.config_values import require_number
from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion, implicit_rewards


def require_label_smoothing(value: float) -> float:
    """eps in [0, 0.5): at 0.5 the labels carry no information (and robust DPO divides by 1 - 2 eps)."""
    return require_number("criterion.label_smoothing", value, 0.0, 0.5, high_inclusive=False)


def dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair DPO (cDPO for label_smoothing > 0) losses and rewards beta * (s - s_ref)."""
    chosen, rejected = implicit_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    margin = chosen - rejected
    losses = -(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)
    return losses, chosen.detach(), rejected.detach()


class DPO(RewardCriterion):
    """`criterion=dpo`: defaults beta 0.1, label_smoothing 0, length_normalization false."""

    def __init__(
        self,
        beta: float = 0.1,
        label_smoothing: float = 0.0,
        length_normalization: bool = False,
        nll_scale: float = 0.0,
    ) -> None:
        super().__init__(beta, nll_scale)
        self.label_smoothing = require_label_smoothing(label_smoothing)
        self.reduction = "avg" if length_normalization else "sum"

    def forward(self, logps: PairLogps) -> CriterionOutput:
        losses, _, _ = dpo_loss(*self.inputs(logps), self.beta, self.label_smoothing)
        return self.with_summed_rewards(losses, logps)
