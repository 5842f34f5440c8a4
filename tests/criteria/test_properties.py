"""Properties every criterion must have: the gradient's sign, finiteness at extreme log-probs,
float32 math under bfloat16 inputs, detached rewards, and bad hyperparameters rejected by key."""

from __future__ import annotations

import pytest
import torch

from lit_prefopt.criteria.alphapo import AlphaPO
from lit_prefopt.criteria.apo import APO
from lit_prefopt.criteria.base import Criterion
from lit_prefopt.criteria.bco import BCOPair
from lit_prefopt.criteria.cpo import CPO
from lit_prefopt.criteria.discopop import DiscoPOP
from lit_prefopt.criteria.dpo import DPO
from lit_prefopt.criteria.exo import EXOPair
from lit_prefopt.criteria.f_dpo import F_PRIMES, FDivergenceDPO
from lit_prefopt.criteria.hinge import Hinge
from lit_prefopt.criteria.ipo import IPO
from lit_prefopt.criteria.nca import NCAPair
from lit_prefopt.criteria.orpo import ORPO
from lit_prefopt.criteria.robust_dpo import RobustDPO
from lit_prefopt.criteria.simpo import SimPO
from lit_prefopt.criteria.slic import SLiC
from lit_prefopt.criteria.sppo import SPPOHard
from lit_prefopt.criteria.weighted_sum import WeightedSum
from tests.criteria.pair_logps import pair

BUILDERS = {
    "dpo": lambda: DPO(),
    "cdpo": lambda: DPO(label_smoothing=0.1),
    "ln_dpo": lambda: DPO(length_normalization=True),
    "ipo": lambda: IPO(),
    "hinge": lambda: Hinge(),
    "simpo": lambda: SimPO(),
    "cpo": lambda: CPO(),
    "orpo": lambda: ORPO(),
    "slic": lambda: SLiC(),
    "robust_dpo": lambda: RobustDPO(),
    "nca_pair": lambda: NCAPair(),
    "bco_pair": lambda: BCOPair(),
    "sppo_hard": lambda: SPPOHard(),
    "apo_zero": lambda: APO("zero"),
    "apo_down": lambda: APO("down"),
    "exo_pair": lambda: EXOPair(),
    "discopop": lambda: DiscoPOP(),
    "alphapo": lambda: AlphaPO(),
    **{f"f_dpo_{name}": (lambda name=name: FDivergenceDPO(name)) for name in F_PRIMES},
    "weighted_sum": lambda: WeightedSum({"dpo": {"criterion": DPO()}, "bco": {"criterion": BCOPair(), "weight": 0.5}}),
}
# Criteria whose point is not to raise the chosen likelihood.
LOWERS_THE_CHOSEN = {"apo_down"}
# DiscoPOP's loss rises with the margin for beta * D in about (-0.11, 0.07) (tau 0.05; see
# test_discopop_is_not_monotone_near_zero), so its sign is checked on a wider wrong-way pair:
# log-ratios -10 and 0, beta * D = 0.05 * -10 = -0.5.
SIGN_PAIRS = {"discopop": (-12.0, -2.0)}


def build(name: str) -> Criterion:
    return BUILDERS[name]()


@pytest.mark.parametrize("name", BUILDERS)
def test_gradient_signs(name: str) -> None:
    """s_w = -2.5, s_l = -1.5 against reference -2: log-ratios -0.5 and +0.5, a wrong-way pair
    inside every target margin. Raising the rejected log-prob must raise the loss; raising the
    chosen one must lower it, except under APO-down, which lowers both likelihoods."""
    logps = pair(*SIGN_PAIRS.get(name, (-2.5, -1.5)))
    build(name)(logps).losses.sum().backward()
    assert logps.rejected.grad.item() > 0
    if name in LOWERS_THE_CHOSEN:
        assert logps.chosen.grad.item() > 0
    else:
        assert logps.chosen.grad.item() < 0


EXTREMES = [
    # (s_w, s_l, s_w^ref, s_l^ref)
    (-1e4, -1e4, 0.0, 0.0),
    (-1e4, 0.0, 0.0, -1e4),
    (0.0, -1e4, -1e4, 0.0),
    (0.0, 0.0, -1e4, -1e4),
    (-1e-9, -1e4, -1e4, 0.0),
    (-1e-9, -1e-9, -1e-9, -1e-9),
]


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("values", EXTREMES, ids=str)
def test_finite_at_extreme_logprobs(name: str, values: tuple[float, ...]) -> None:
    """Log-probs at -1e4 (a very unlikely completion) and near 0 (a certain one, ORPO's a -> 0):
    losses and gradients stay finite, never inf or NaN."""
    logps = pair(*values)
    out = build(name)(logps)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all()
    assert torch.isfinite(logps.chosen.grad).all() and torch.isfinite(logps.rejected.grad).all()


@pytest.mark.parametrize("name", BUILDERS)
def test_float32_under_bfloat16_inputs_and_detached_rewards(name: str) -> None:
    out = build(name)(pair(dtype=torch.bfloat16))
    assert out.losses.dtype == out.chosen_rewards.dtype == out.rejected_rewards.dtype == torch.float32
    assert out.losses.requires_grad
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad


@pytest.mark.parametrize("name", BUILDERS)
def test_shapes_follow_the_batch(name: str) -> None:
    logps = pair()
    batch = type(logps)(*(torch.cat([v.detach()] * 3) for v in vars(logps).values() if v is not None))
    out = build(name)(batch)
    assert out.losses.shape == out.chosen_rewards.shape == out.rejected_rewards.shape == (3,)


@pytest.mark.parametrize(
    "build_bad,key",
    [
        (lambda: DPO(beta=-1), "criterion.beta"),
        (lambda: DPO(label_smoothing=0.7), "criterion.label_smoothing"),
        (lambda: DPO(nll_scale=-1), "criterion.nll_scale"),
        (lambda: IPO(beta=0), "criterion.beta"),
        (lambda: Hinge(beta=-0.1), "criterion.beta"),
        (lambda: SimPO(beta=0), "criterion.beta"),
        (lambda: SimPO(gamma=1.0, gamma_beta_ratio=0.5), "criterion.gamma"),
        (lambda: SimPO(gamma=-1.0), "criterion.gamma"),
        (lambda: SimPO(gamma_beta_ratio=-1.0), "criterion.gamma_beta_ratio"),
        (lambda: CPO(beta=-0.1), "criterion.beta"),
        (lambda: CPO(nll_scale=-1), "criterion.nll_scale"),
        (lambda: ORPO(**{"lambda": -1.0}), "criterion.lambda"),
        (lambda: ORPO(**{"lamda": 1.0}), "criterion.lamda"),
        (lambda: SLiC(delta=-1), "criterion.delta"),
        (lambda: RobustDPO(label_smoothing=0.5), "criterion.label_smoothing"),
        (lambda: NCAPair(beta=0), "criterion.beta"),
        (lambda: BCOPair(beta=-1), "criterion.beta"),
        (lambda: SPPOHard(beta=0), "criterion.beta"),
        (lambda: APO("up"), "criterion.anchor"),
        (lambda: EXOPair(label_smoothing=0.0), "criterion.label_smoothing"),
        (lambda: DiscoPOP(tau=0), "criterion.tau"),
        (lambda: AlphaPO(beta=-2), "criterion.beta"),
        (lambda: FDivergenceDPO("tv"), "criterion.divergence"),
        (lambda: FDivergenceDPO("alpha", alpha=1.5), "criterion.alpha"),
        (lambda: WeightedSum({}), "criterion.terms"),
        (lambda: WeightedSum({"a": {"criterion": DPO(), "weight": -1}}), "criterion.terms.a.weight"),
        # What a typed override can hand over: a string, a bool (Python's 1), an infinity.
        (lambda: DPO(beta="abc"), "criterion.beta"),
        (lambda: DPO(beta=True), "criterion.beta"),
        (lambda: DPO(beta=float("inf")), "criterion.beta"),
        (lambda: DPO(label_smoothing="0.1"), "criterion.label_smoothing"),
        (lambda: SimPO(gamma=float("nan")), "criterion.gamma"),
        (lambda: AlphaPO(alpha="abc"), "criterion.alpha"),
        (lambda: AlphaPO(alpha=float("inf")), "criterion.alpha"),
        (lambda: FDivergenceDPO("js", alpha="x"), "criterion.alpha"),
        (lambda: EXOPair(label_smoothing=True), "criterion.label_smoothing"),
    ],
)
def test_bad_hyperparameters_name_their_key(build_bad, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build_bad()
