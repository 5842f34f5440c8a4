"""DPO (Rafailov et al., 2023), with cDPO label smoothing and length normalization.

loss = -(1 - eps) log sig(beta D) - eps log sig(-beta D), with
D = (s_w - s_w^ref) - (s_l - s_l^ref) over summed completion log-probs (per-token averages when
`length_normalization`). eps = 0 is plain DPO; eps > 0 is conservative DPO (Mitchell, 2023).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.criteria.base import Criterion, CriterionOutput, PairLogps, as_float32, require_positive


def dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair DPO losses and the implicit rewards beta * (s - s_ref)."""
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = as_float32(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected
    )
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    logits = chosen_rewards - rejected_rewards
    losses = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


class DPO(Criterion):
    """`criterion=dpo`; `label_smoothing` > 0 is cDPO, `nll_scale` > 0 is RPO."""

    needs_reference = True

    def __init__(
        self, beta: float = 0.1, label_smoothing: float = 0.0, length_normalization: bool = False, nll_scale: float = 0.0
    ) -> None:
        super().__init__(nll_scale)
        self.beta = require_positive("criterion.beta", beta)
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"criterion.label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.reduction = "avg" if length_normalization else "sum"

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = logps.reduced(self.reduction)
        ref_chosen, ref_rejected = logps.reference_reduced(self.reduction)
        return CriterionOutput(*dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.beta, self.label_smoothing))
