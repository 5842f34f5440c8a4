"""The per-pair values behind the metric names in docs/ARCHITECTURE.md#metric-names.

Each value is per pair, so the module can average it over an optimizer step (train/...) or
over the whole validation set and all ranks (val/...) with the same definition.
"""

from __future__ import annotations

from torch import Tensor

from lit_prefopt.criteria.base import CriterionOutput, PairLogps

PAIR_METRICS = (
    "loss",
    "pref_loss",
    "nll_loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margin",
    "rewards/accuracy",
    "logps/chosen",
    "logps/rejected",
    "lengths/chosen",
    "lengths/rejected",
)


def pair_metrics(logps: PairLogps, output: CriterionOutput, per_pair_loss: Tensor) -> dict[str, Tensor]:
    """Per-pair values of every metric in `PAIR_METRICS`, keyed by its name without prefix."""
    margin = output.chosen_rewards - output.rejected_rewards
    values = {
        "loss": per_pair_loss,
        "pref_loss": output.losses,
        "nll_loss": logps.chosen_nll,
        "rewards/chosen": output.chosen_rewards,
        "rewards/rejected": output.rejected_rewards,
        "rewards/margin": margin,
        "rewards/accuracy": (margin > 0).float(),
        "logps/chosen": logps.chosen,
        "logps/rejected": logps.rejected,
        "lengths/chosen": logps.chosen_lengths,
        "lengths/rejected": logps.rejected_lengths,
    }
    return {name: value.detach() for name, value in values.items()}
