"""The contract between a preference criterion and the training module.

A criterion sees only per-sequence log-probs (`PairLogps`) and returns per-pair losses and
rewards (`CriterionOutput`). It declares what it needs (`needs_reference`) so the training module
never branches on the criterion's type, and it holds its hyperparameters, validated at
construction so a bad value fails before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from lit_prefopt.config_values import require_number

LogprobReduction = Literal["sum", "avg"]


@dataclass
class PairLogps:
    """Per-pair log-probs of the completion tokens (EOS included), all float32 of shape [B].

    `chosen`/`rejected` are the policy's summed log-probs s_w and s_l; the lengths are |y| as
    floats; `ref_chosen`/`ref_rejected` are the reference's summed log-probs, or None when the
    criterion needs no reference. `weights` are the pairs' weights in the step (0 for the padding
    pairs a rank with no data left trains on), for criteria with running statistics; None means
    every pair counts.
    """

    chosen: Tensor
    rejected: Tensor
    chosen_lengths: Tensor
    rejected_lengths: Tensor
    ref_chosen: Tensor | None = None
    ref_rejected: Tensor | None = None
    weights: Tensor | None = None

    @property
    def pair_weights(self) -> Tensor:
        """`weights`, or ones when none were given."""
        return self.weights if self.weights is not None else torch.ones_like(self.chosen)

    @property
    def chosen_avg(self) -> Tensor:
        """a_w = s_w / |y_w|, the per-token mean log-prob of the chosen completion."""
        return self.chosen / self.chosen_lengths

    @property
    def rejected_avg(self) -> Tensor:
        return self.rejected / self.rejected_lengths

    @property
    def ref_chosen_avg(self) -> Tensor:
        return self.require_reference()[0] / self.chosen_lengths

    @property
    def ref_rejected_avg(self) -> Tensor:
        return self.require_reference()[1] / self.rejected_lengths

    @property
    def chosen_nll(self) -> Tensor:
        """NLL_w = -a_w: per-token mean cross-entropy of the chosen completion, per pair."""
        return -self.chosen_avg

    def require_reference(self) -> tuple[Tensor, Tensor]:
        if self.ref_chosen is None or self.ref_rejected is None:
            raise ValueError("this criterion needs reference log-probs but none were given")
        return self.ref_chosen, self.ref_rejected

    def reduced(self, reduction: LogprobReduction) -> tuple[Tensor, Tensor]:
        """Policy (chosen, rejected) log-probs as sums or per-token averages."""
        if reduction == "sum":
            return self.chosen, self.rejected
        return self.chosen_avg, self.rejected_avg

    def reference_reduced(self, reduction: LogprobReduction) -> tuple[Tensor, Tensor]:
        """Reference (chosen, rejected) log-probs as sums or per-token averages."""
        if reduction == "sum":
            return self.require_reference()
        return self.ref_chosen_avg, self.ref_rejected_avg


@dataclass
class CriterionOutput:
    """Per-pair preference losses [B] and detached rewards [B] (docs/ARCHITECTURE.md#log-probs-and-loss-conventions)."""

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor


def require_positive(key: str, value: float) -> float:
    """A finite hyperparameter > 0, else a ValueError naming its config key."""
    return require_number(key, value, low=0.0, low_inclusive=False)


def require_non_negative(key: str, value: float) -> float:
    """A finite hyperparameter >= 0, else a ValueError naming its config key."""
    return require_number(key, value, low=0.0)


class Criterion(nn.Module):
    """A preference loss bound to its hyperparameters.

    Subclasses set `needs_reference` and `reduction`, validate their hyperparameters in
    `__init__` (naming the `criterion.<key>` in errors), and implement `forward`. The training
    objective is `mean(losses) + nll_scale * mean(NLL_w)`; the module adds the NLL term so every
    criterion gets it the same way (RPO is DPO with nll_scale > 0).

    It is an `nn.Module` so criteria with running state (BCO's reward mean) keep it in buffers
    that move with the model and land in checkpoints.
    """

    needs_reference: ClassVar[bool] = False
    reduction: LogprobReduction = "sum"

    def __init__(self, nll_scale: float = 0.0) -> None:
        super().__init__()
        self.nll_scale = require_non_negative("criterion.nll_scale", nll_scale)

    def forward(self, logps: PairLogps) -> CriterionOutput:  # pragma: no cover - abstract
        raise NotImplementedError


def as_float32(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Loss math runs in float32 whatever the model dtype (docs/ARCHITECTURE.md#log-probs-and-loss-conventions)."""
    return tuple(t.to(torch.float32) for t in tensors)
