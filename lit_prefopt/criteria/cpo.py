"""CPO (Xu et al., 2024, "Contrastive Preference Optimization: Pushing the Boundaries of LLM
Performance in Machine Translation"): reference-free DPO on summed log-probs plus an NLL term.

loss = -log sig(beta (s_w - s_l)) + nll_scale * NLL_w. The training module adds the NLL term,
which is why `nll_scale` defaults to 1 here: the paper's unweighted sum of the two terms. NLL_w
is the per-token mean of each chosen completion averaged over pairs; TRL averages over all chosen
tokens of the batch instead, weighing long completions more.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.criteria.base import Criterion, CriterionOutput, PairLogps, as_float32, require_positive


def cpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair CPO preference losses and rewards beta * s."""
    chosen, rejected = as_float32(policy_chosen, policy_rejected)
    chosen_rewards = beta * chosen
    rejected_rewards = beta * rejected
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


class CPO(Criterion):
    """`criterion=cpo`: defaults beta 0.1, nll_scale 1."""

    needs_reference = False
    reduction = "sum"

    def __init__(self, beta: float = 0.1, nll_scale: float = 1.0) -> None:
        super().__init__(nll_scale)
        self.beta = require_positive("criterion.beta", beta)

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*cpo_loss(logps.chosen, logps.rejected, self.beta))
