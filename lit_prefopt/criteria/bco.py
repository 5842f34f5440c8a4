"""BCO, pairwise (Jung et al., 2024, "Binary Classifier Optimization for Large Language Model
Alignment").

Each completion is classified on its own, against a reward shift delta:
loss = -log sig(r_w - delta) - log sig(-(r_l - delta)), r = beta * log pi/pi_ref.
The paper takes delta as a moving average of the rewards seen in training. Here it is the
running mean of every chosen and rejected reward of every training step so far, on every
data-parallel rank: the step's sum and count are all-reduced, so 2 ranks with half a batch each
train exactly like 1 rank with the whole batch (the zero-weight padding pairs of a rank whose
shard ran out count for nothing). The mean is updated with the step's rewards
before the loss uses it, lives in buffers (checkpointed, resumed), and is frozen in eval mode so
validation does not move it. TRL's earlier `bco_pair` kept a running mean of per-batch means (the
same for equal batch sizes); TRL 1.16's drops delta altogether. We follow the paper.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.criteria.base import CriterionOutput, PairLogps
from lit_prefopt.criteria.reference_margin import RewardCriterion, implicit_rewards


def bco_pair_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
    delta: Tensor | float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair BCO losses for reward shift `delta`, and rewards beta * (s - s_ref)."""
    chosen, rejected = implicit_rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    losses = -F.logsigmoid(chosen - delta) - F.logsigmoid(-(rejected - delta))
    return losses, chosen.detach(), rejected.detach()


def global_sum_and_count(values: Tensor, weights: Tensor) -> Tensor:
    """[weighted sum, total weight] of `values` over all data-parallel ranks, in float64."""
    weights = weights.double()
    totals = torch.stack([(values.double() * weights).sum(), weights.sum()])
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(totals)
    return totals


class BCOPair(RewardCriterion):
    """`criterion=bco_pair`: default beta 0.1; the running mean starts at 0."""

    def __init__(self, beta: float = 0.1, nll_scale: float = 0.0) -> None:
        super().__init__(beta, nll_scale)
        self.register_buffer("reward_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("reward_count", torch.zeros((), dtype=torch.float64))

    def _apply(self, fn, recurse: bool = True) -> BCOPair:
        """Follow device moves but keep the statistics float64 through dtype casts: bf16-true
        precision casts every floating buffer, and a bf16 count stops growing at 256."""
        statistics = {name: getattr(self, name) for name in ("reward_sum", "reward_count")}
        super()._apply(fn, recurse)
        for name, value in statistics.items():
            setattr(self, name, value.to(getattr(self, name).device))
        return self

    @property
    def delta(self) -> Tensor:
        """The running mean reward (0 before any training step), float32."""
        return (self.reward_sum / self.reward_count.clamp(min=1.0)).float()

    def forward(self, logps: PairLogps) -> CriterionOutput:
        inputs = self.inputs(logps)
        if self.training:
            with torch.no_grad():
                weights = logps.pair_weights
                totals = global_sum_and_count(torch.cat(implicit_rewards(*inputs, self.beta)), torch.cat([weights, weights]))
            self.reward_sum += totals[0]
            self.reward_count += totals[1]
        return CriterionOutput(*bco_pair_loss(*inputs, self.beta, self.delta))
