"""BCO, pairwise (Jung et al., 2024, "Binary Classifier Optimization for LLM Alignment").

Each completion is classified on its own: loss = -log sig(r_w - delta) - log sig(-(r_l - delta)),
r = beta * log pi/pi_ref, where delta is the running mean of every reward seen in training (the
paper's reward shift). The mean is over all chosen and rejected rewards of all steps so far and
of all data-parallel ranks (an all-reduce of sum and count), so 2 ranks with half a batch each
train exactly like 1 rank with the whole batch. It is updated with the batch before the loss
uses it, lives in buffers (checkpointed, resumed), and is frozen during validation.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion


class BCOPair(RewardCriterion):
    """`criterion=bco_pair`: default beta 0.1."""

    def __init__(self, beta: float = 0.1, nll_scale: float = 0.0) -> None:
        super().__init__(beta, nll_scale)
        self.register_buffer("reward_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("reward_count", torch.zeros((), dtype=torch.float64))

    @property
    def delta(self) -> Tensor:
        """The running mean reward (0 before any training step)."""
        return (self.reward_sum / self.reward_count.clamp(min=1.0)).float()

    def forward(self, logps: PairLogps) -> CriterionOutput:
        chosen, rejected = self.rewards(logps)
        if self.training:
            self._update_running_mean(torch.cat([chosen, rejected]).detach())
        delta = self.delta
        losses = -F.logsigmoid(chosen - delta) - F.logsigmoid(-(rejected - delta))
        return CriterionOutput(losses, chosen.detach(), rejected.detach())

    def _update_running_mean(self, rewards: Tensor) -> None:
        totals = torch.stack([rewards.double().sum(), torch.tensor(float(rewards.numel()), dtype=torch.float64,
                                                                    device=rewards.device)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(totals)
        self.reward_sum += totals[0]
        self.reward_count += totals[1]
