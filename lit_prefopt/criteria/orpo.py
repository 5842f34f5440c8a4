"""ORPO (Hong et al., 2024, "ORPO: Monolithic Preference Optimization without Reference Model").

loss = nll_scale * NLL_w - lambda * log sig(log_odds), with
log_odds = (a_w - a_l) - (log(1 - exp(a_w)) - log(1 - exp(a_l))), a the per-token average
log-prob. As in the paper: average log-probs, the odds term weighed by lambda, and L_SFT the
per-token mean NLL of each chosen completion averaged over pairs (the module's NLL term with
nll_scale 1). fairseq2 v0.4 used summed log-probs and ignored its lambda; TRL averages its NLL
over all chosen tokens of the batch, which weighs long completions more. log(1 - exp(a)) is a
stable log1mexp in float32 with `a` clamped just below 0, so a completion the policy is certain
of gives a large finite loss, never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_prefopt.criteria.base import Criterion, CriterionOutput, PairLogps, as_float32, require_positive

# exp(-1e-6) ~ 1 - 1e-6, still distinguishable from 1 in float32.
LOG_PROB_CEILING = -1e-6


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Maechler, 2012)."""
    x = x.clamp(max=LOG_PROB_CEILING)
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_loss(policy_chosen_avg: Tensor, policy_rejected_avg: Tensor, lambda_: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair odds-ratio losses (lambda included) and rewards lambda * a."""
    chosen, rejected = as_float32(policy_chosen_avg, policy_rejected_avg)
    chosen = chosen.clamp(max=LOG_PROB_CEILING)
    rejected = rejected.clamp(max=LOG_PROB_CEILING)
    log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
    losses = -lambda_ * F.logsigmoid(log_odds)
    return losses, (lambda_ * chosen).detach(), (lambda_ * rejected).detach()


class ORPO(Criterion):
    """`criterion=orpo`: defaults lambda 0.1, nll_scale 1.

    The config key is `criterion.lambda`, the paper's name; being a Python keyword, it arrives
    through `**hyperparameters`.
    """

    needs_reference = False
    reduction = "avg"

    def __init__(self, nll_scale: float = 1.0, **hyperparameters: float) -> None:
        super().__init__(nll_scale)
        unknown = set(hyperparameters) - {"lambda"}
        if unknown:
            raise ValueError(f"unknown ORPO hyperparameters: {sorted('criterion.' + k for k in unknown)}")
        self.lambda_ = require_positive("criterion.lambda", hyperparameters.get("lambda", 0.1))

    def forward(self, logps: PairLogps) -> CriterionOutput:
        return CriterionOutput(*orpo_loss(*logps.reduced(self.reduction), self.lambda_))
