"""A weighted sum of criteria as one criterion (e.g. DPO + BCO pair, plus an NLL term).

losses = sum_i w_i * losses_i; the NLL weight is the sum's own `nll_scale` plus each term's
weighted `nll_scale`; a reference is needed when any term needs one. Rewards and the reward
margin on dashboards are the first term's, so they keep one meaning (order the terms with that
in mind).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from lit_prefopt.criteria.base import Criterion, CriterionOutput, PairLogps, require_non_negative


class WeightedSum(Criterion):
    """`criterion=weighted_sum`: `terms` maps names to {criterion: <criterion node>, weight: w}."""

    def __init__(self, terms: Mapping[str, Mapping], nll_scale: float = 0.0) -> None:
        super().__init__(nll_scale)
        if not terms:
            raise ValueError("criterion.terms is empty: give at least one {criterion, weight}")
        self.terms = nn.ModuleDict({name: term["criterion"] for name, term in terms.items()})
        self.weights = {
            name: require_non_negative(f"criterion.terms.{name}.weight", term.get("weight", 1.0))
            for name, term in terms.items()
        }
        self.nll_scale = self.nll_scale + sum(self.weights[n] * c.nll_scale for n, c in self.terms.items())

    @property
    def needs_reference(self) -> bool:  # type: ignore[override]
        return any(term.needs_reference for term in self.terms.values())

    def forward(self, logps: PairLogps) -> CriterionOutput:
        outputs = {name: term(logps) for name, term in self.terms.items()}
        first = next(iter(outputs.values()))
        losses = sum(self.weights[name] * output.losses for name, output in outputs.items())
        return CriterionOutput(losses, first.chosen_rewards, first.rejected_rewards)
