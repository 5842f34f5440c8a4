"""The rest of the criterion family against hand-derived values.

The standard pair (pair_logps.pair): s_w = -1, s_l = -3, |y_w| = 4, |y_l| = 3, reference -2
for both, so the summed log-ratios are +1 (chosen) and -1 (rejected); with beta = 0.5 the
implicit rewards are r_w = 0.5, r_l = -0.5 and the margin beta * D = 1. softplus(x) = log(1 + e^x).
"""

from __future__ import annotations

import math

import pytest
import torch

from lit_prefopt.criteria.alphapo import AlphaPO
from lit_prefopt.criteria.apo import APO
from lit_prefopt.criteria.bco import BCOPair, bco_pair_loss
from lit_prefopt.criteria.discopop import DiscoPOP, discopop_loss
from lit_prefopt.criteria.dpo import DPO
from lit_prefopt.criteria.exo import EXOPair
from lit_prefopt.criteria.f_dpo import FDivergenceDPO
from lit_prefopt.criteria.hinge import Hinge
from lit_prefopt.criteria.ipo import IPO
from lit_prefopt.criteria.nca import NCAPair
from lit_prefopt.criteria.robust_dpo import RobustDPO
from lit_prefopt.criteria.simpo import SimPO
from lit_prefopt.criteria.slic import SLiC
from lit_prefopt.criteria.sppo import SPPOHard
from lit_prefopt.criteria.weighted_sum import WeightedSum
from tests.criteria.pair_logps import pair

TOL = 2e-6


def loss(criterion, logps=None) -> float:
    return criterion(pair() if logps is None else logps).losses.item()


def test_ipo() -> None:
    """Per-token averages: chosen -1/4 - (-2/4) = 0.25, rejected -3/3 - (-2/3) = -1/3;
    D_avg = 0.583333; beta 0.5, target 1/(2 * 0.5) = 1: (0.583333 - 1)^2 = 0.173611.
    Rewards are logged over sums like every reference criterion's: 0.5 * (+1) and 0.5 * (-1)
    (over averages they would be 0.125 and -0.166667)."""
    out = IPO(beta=0.5)(pair())
    assert out.losses.item() == pytest.approx(0.173611, abs=TOL)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((0.5, -0.5))


def test_hinge() -> None:
    """beta 0.5: relu(1 - 1) = 0 (margin met); beta 0.25: relu(1 - 0.5) = 0.5."""
    assert loss(Hinge(beta=0.5)) == 0.0
    assert loss(Hinge(beta=0.25)) == pytest.approx(0.5)


def test_slic() -> None:
    """Standard pair: relu(1 - (-1 + 3)) = 0. s_w = -3, s_l = -2.5: relu(1 - (-0.5)) = 1.5, and
    the rewards are the summed log-probs -3 and -2.5. No reference is needed; lambda defaults to 0.5."""
    criterion = SLiC()
    assert loss(criterion) == 0.0
    out = criterion(pair(-3.0, -2.5))
    assert out.losses.item() == pytest.approx(1.5)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == (-3.0, -2.5)
    assert not criterion.needs_reference and criterion.nll_scale == 0.5


def test_robust_dpo() -> None:
    """eps 0.1: (0.9 * softplus(-1) - 0.1 * softplus(1)) / 0.8 = (0.281936 - 0.131326) / 0.8 = 0.188262."""
    assert loss(RobustDPO(beta=0.5, label_smoothing=0.1)) == pytest.approx(0.188262, abs=TOL)


def test_robust_dpo_is_unbiased_under_label_noise() -> None:
    """Its expectation over labels flipped with probability eps is DPO's clean loss:
    (1 - eps) * L(pair) + eps * L(swapped pair) = softplus(-1) = 0.313262."""
    robust = RobustDPO(beta=0.5, label_smoothing=0.2)
    expected = 0.8 * loss(robust) + 0.2 * loss(robust, pair(-3.0, -1.0))
    assert expected == pytest.approx(loss(DPO(beta=0.5)), abs=TOL)


def test_nca_pair() -> None:
    """softplus(-0.5) + 0.5 * softplus(0.5) + 0.5 * softplus(-0.5)
    = 0.474077 + 0.487038 + 0.237038 = 1.198154."""
    assert loss(NCAPair(beta=0.5)) == pytest.approx(1.198154, abs=TOL)


def test_bco_pair_running_mean() -> None:
    """Step 1 rewards 0.5 and -0.5: delta = 0, loss softplus(-0.5) + softplus(-0.5) = 0.948154.
    Step 2, s_w = 0 (r_w = 1), s_l = -2 (r_l = 0): delta = (0.5 - 0.5 + 1 + 0) / 4 = 0.25,
    loss = -log sig(1 - 0.25) - log sig(-(0 - 0.25)) = softplus(-0.75) + softplus(-0.25)
    = 0.386871 + 0.575940 = 0.962810. In eval mode the mean does not move."""
    criterion = BCOPair(beta=0.5)
    assert loss(criterion) == pytest.approx(0.948154, abs=TOL)
    assert loss(criterion, pair(0.0, -2.0)) == pytest.approx(0.962810, abs=TOL)
    assert criterion.delta.item() == pytest.approx(0.25)
    criterion.eval()
    criterion(pair(5.0, -9.0))
    assert criterion.delta.item() == pytest.approx(0.25)
    assert set(criterion.state_dict()) == {"reward_sum", "reward_count"}


def test_bco_pair_running_mean_ignores_padding_pairs() -> None:
    """A rank whose shard ran out trains on a copy of a pair with weight 0: it must not move the
    mean. Pairs (s_w, s_l) = (-1, -3) and (0, -2), reference -2, beta 0.5: rewards 0.5, -0.5, 1, 0,
    delta = 1/4 = 0.25; the zero-weight copy of the second pair would make it (1 + 1) / 6 = 0.333."""
    from lit_prefopt.criteria.base import PairLogps

    criterion = BCOPair(beta=0.5)
    chosen, rejected = torch.tensor([-1.0, 0.0, 0.0]), torch.tensor([-3.0, -2.0, -2.0])
    lengths, reference = torch.ones(3), torch.full((3,), -2.0)
    criterion(PairLogps(chosen, rejected, lengths, lengths, reference, reference, weights=torch.tensor([1.0, 1.0, 0.0])))
    assert criterion.delta.item() == pytest.approx(0.25)
    assert criterion.reward_count.item() == 4.0


def test_bco_pair_statistics_stay_float64_under_dtype_casts() -> None:
    """bf16-true precision casts the module to bfloat16; the running sum and count must not follow
    (in bfloat16, 256 + 1 = 256). After 300 updates of rewards 0.5 and -0.5 (s_w = -1, s_l = -3 as
    always, beta 0.5) the count is exactly 600 and the mean 0."""
    criterion = BCOPair(beta=0.5).to(torch.bfloat16)
    for _ in range(300):
        criterion(pair())
    assert criterion.reward_count.dtype == torch.float64 and criterion.reward_count.item() == 600.0
    assert criterion.delta.item() == 0.0


def test_bco_pair_loss_takes_delta() -> None:
    """delta 0.5 on the standard pair: softplus(-(0.5 - 0.5)) + softplus(-0.5 - 0.5)
    = log 2 + softplus(-1) = 0.693147 + 0.313262 = 1.006409."""
    losses, _, _ = bco_pair_loss(*(torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.0)), beta=0.5, delta=0.5)
    assert losses.item() == pytest.approx(1.006409, abs=TOL)


def test_sppo_hard() -> None:
    """beta 0.5: targets +-1/(2 * 0.5) = +-1 met exactly, loss 0; beta 0.25: targets +-2,
    (1 - 2)^2 + (-1 + 2)^2 = 2."""
    assert loss(SPPOHard(beta=0.5)) == 0.0
    assert loss(SPPOHard(beta=0.25)) == pytest.approx(2.0)


def test_apo_zero() -> None:
    """(1 - sig(0.5)) + sig(-0.5) = 0.377541 + 0.377541 = 0.755081."""
    assert loss(APO("zero", beta=0.5)) == pytest.approx(0.755081, abs=TOL)


def test_apo_down() -> None:
    """sig(0.5) + (1 - sig(1)) = 0.622459 + 0.268941 = 0.891401."""
    assert loss(APO("down", beta=0.5)) == pytest.approx(0.891401, abs=TOL)


def test_exo_pair() -> None:
    """eps 0.1, margin 1: sig(1) (log sig(1) - log 0.9) + sig(-1) (log sig(-1) - log 0.1)
    = 0.731059 * (-0.313262 + 0.105361) + 0.268941 * (-1.313262 + 2.302585)
    = -0.151988 + 0.266070 = 0.114082."""
    assert loss(EXOPair(beta=0.5, label_smoothing=0.1)) == pytest.approx(0.114082, abs=TOL)


def test_discopop() -> None:
    """tau 0.05, margin 1: mix = sig(20) = 1 - 2e-9, so the loss is exp(-1) = 0.367879.
    Swapped pair, margin -1: mix = sig(-20) ~ 0, the logistic part softplus(1) = 1.313262."""
    assert loss(DiscoPOP(beta=0.5, tau=0.05)) == pytest.approx(0.367879, abs=TOL)
    assert loss(DiscoPOP(beta=0.5, tau=0.05), pair(-3.0, -1.0)) == pytest.approx(1.313262, abs=TOL)


def test_discopop_is_not_monotone_near_zero() -> None:
    """The published loss, L(m) = (1 - sig(m/tau)) softplus(-m) + sig(m/tau) e^-m, has
    L'(m) = sig'(m/tau)/tau (e^-m - softplus(-m)) - (1 - sig(m/tau)) sig(-m) - sig(m/tau) e^-m.
    At m = 0, tau 0.05: 5 (1 - log 2) - 0.25 - 0.5 = 1.534264 - 0.75 = 0.784264 > 0: at
    initialization the loss rises with the margin (so its gradient lowers the chosen log-prob);
    outside a small band around 0 it behaves like DPO's."""
    margin = torch.tensor([0.0, -1.0, 1.0], requires_grad=True)
    zeros = torch.zeros(3)
    losses, _, _ = discopop_loss(margin, zeros, zeros, zeros, beta=1.0, tau=0.05)
    losses.sum().backward()
    assert margin.grad[0].item() == pytest.approx(0.784264, abs=TOL)
    assert margin.grad[1].item() < 0 and margin.grad[2].item() < 0


def test_alphapo() -> None:
    """alpha 0.5, beta 2, gamma 0.5; a_w = -1/4, a_l = -3/3 = -1.
    r_w = (2/0.5)(1 - e^{0.125}) = 4 * (-0.133148) = -0.532594; r_l = 4 (1 - e^{0.5}) = -2.594885;
    r_w - r_l - gamma = 2.062291 - 0.5 = 1.562291; loss = softplus(-1.562291) = 0.190335."""
    out = AlphaPO(alpha=0.5, beta=2.0, gamma=0.5)(pair())
    assert out.losses.item() == pytest.approx(0.190335, abs=TOL)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((-0.532594, -2.594885), abs=TOL)


def test_alphapo_tends_to_simpo() -> None:
    """(beta/alpha)(1 - e^{-alpha a}) -> beta * a as alpha -> 0; alpha = 0 is SimPO exactly."""
    torch.testing.assert_close(loss(AlphaPO(alpha=0.0)), loss(SimPO()))
    assert loss(AlphaPO(alpha=1e-4)) == pytest.approx(loss(SimPO()), abs=1e-4)


@pytest.mark.parametrize(
    "divergence,alpha,expected",
    [
        # reverse KL: f'(u) = log u (+1): DPO, softplus(-1) = 0.313262.
        ("reverse_kl", 0.5, 0.313262),
        # JS: f'(u) = log u - softplus(log u): (1 - 1.313262) - (-1 - 0.313262) = 1;
        # loss softplus(-0.5 * 1) = 0.474077.
        ("js", 0.5, 0.474077),
        # forward KL: f'(u) = -1/u: -e^-1 + e^1 = 2.350402; loss softplus(-0.5 * 2.350402) = 0.269078.
        ("forward_kl", 0.5, 0.269078),
        # alpha 0.5: f'(u) = (1 - u^-0.5)/0.5: (2 - 2e^-0.5) - (2 - 2e^0.5) = 2.084381;
        # loss softplus(-0.5 * 2.084381) = 0.302089.
        ("alpha", 0.5, 0.302089),
    ],
)
def test_f_dpo(divergence: str, alpha: float, expected: float) -> None:
    """Standard pair, beta 0.5, log-ratios +1 and -1 (derivations beside each case)."""
    out = FDivergenceDPO(divergence, beta=0.5, alpha=alpha)(pair())
    assert out.losses.item() == pytest.approx(expected, abs=TOL)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((0.5, -0.5))


def test_f_dpo_alpha_limits() -> None:
    """alpha -> 0 is reverse KL (DPO), alpha -> 1 forward KL."""
    assert loss(FDivergenceDPO("alpha", beta=0.5, alpha=1e-4)) == pytest.approx(0.313262, abs=1e-4)
    assert loss(FDivergenceDPO("alpha", beta=0.5, alpha=1 - 1e-4)) == pytest.approx(0.269078, abs=1e-4)


def test_weighted_sum() -> None:
    """DPO(beta 0.5) + 2 x Hinge(beta 0.25): 0.313262 + 2 * 0.5 = 1.313262; rewards are the first
    term's (DPO's 0.5, -0.5); nll_scale = own 0.1 + 1 * 0.5 (DPO's) + 2 * 0 = 0.6."""
    criterion = WeightedSum(
        {"dpo": {"criterion": DPO(beta=0.5, nll_scale=0.5)}, "hinge": {"criterion": Hinge(beta=0.25), "weight": 2.0}},
        nll_scale=0.1,
    )
    out = criterion(pair())
    assert out.losses.item() == pytest.approx(1.313262, abs=TOL)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((0.5, -0.5))
    assert criterion.nll_scale == pytest.approx(0.6)


def test_weighted_sum_declares_what_its_terms_need() -> None:
    assert not WeightedSum({"simpo": {"criterion": SimPO()}}).needs_reference
    assert WeightedSum({"simpo": {"criterion": SimPO()}, "dpo": {"criterion": DPO()}}).needs_reference


def test_every_reference_criterion_at_policy_equals_reference() -> None:
    """At initialization (policy = reference) every log-ratio is 0, so r = 0 and:
    DPO-like logistic losses log 2 = 0.693147; hinge 1; IPO (1/(2 * 0.5))^2 = 1;
    SPPO 1 + 1 = 2; NCA log 2 + 0.5 log 2 + 0.5 log 2 = 2 log 2; APO-zero 0.5 + 0.5 = 1;
    APO-down 0.5 + 0.5 = 1; EXO (eps 0.1) 0.5 (log 0.5 - log 0.9) + 0.5 (log 0.5 - log 0.1) = 0.510826;
    DiscoPOP 0.5 log 2 + 0.5 * 1 = 0.846574."""
    at_init = pair(-2.0, -2.0)
    log2 = math.log(2.0)
    cases = [
        (DPO(beta=0.5), log2),
        (RobustDPO(beta=0.5, label_smoothing=0.1), log2),
        (FDivergenceDPO("js", beta=0.5), log2),
        (Hinge(beta=0.5), 1.0),
        (IPO(beta=0.5), 1.0),
        (SPPOHard(beta=0.5), 2.0),
        (NCAPair(beta=0.5), 2 * log2),
        (APO("zero", beta=0.5), 1.0),
        (APO("down", beta=0.5), 1.0),
        (EXOPair(beta=0.5, label_smoothing=0.1), 0.510826),
        (DiscoPOP(beta=0.5), 0.846574),
    ]
    for criterion, expected in cases:
        assert loss(criterion, at_init) == pytest.approx(expected, abs=TOL), type(criterion).__name__
