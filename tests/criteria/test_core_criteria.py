"""DPO (with cDPO, RPO, length normalization), SimPO, CPO and ORPO against hand-derived numbers.

The standard pair (see pair_logps.pair): s_w = -1, s_l = -3, |y_w| = 4, |y_l| = 3, reference
log-probs -2 for both, so the summed log-ratios are +1 and -1 and D = 2.
"""

from __future__ import annotations

import math

import pytest
import torch

from lit_prefopt.criteria.cpo import CPO, cpo_loss
from lit_prefopt.criteria.dpo import DPO, dpo_loss
from lit_prefopt.criteria.orpo import ORPO, log1mexp, orpo_loss
from lit_prefopt.criteria.simpo import SimPO, simpo_loss
from tests.criteria.pair_logps import pair, softplus


def test_dpo_by_hand() -> None:
    """D = (-1 + 2) - (-3 + 2) = 2; beta 0.5: beta*D = 1.

    loss = -log sig(1) = log(1 + e^-1) = 0.313262; rewards 0.5 * (+1) = 0.5 and 0.5 * (-1) = -0.5.
    """
    out = DPO(beta=0.5)(pair())
    assert out.losses.item() == pytest.approx(softplus(-1.0), abs=1e-6)
    assert out.losses.item() == pytest.approx(0.313262, abs=1e-6)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((0.5, -0.5))


def test_dpo_loss_is_a_pure_function_over_batches() -> None:
    """Two pairs at once, beta 1: D = 0 gives log 2 = 0.693147; D = -1 (chosen fell by 1 nat
    against the reference) gives log(1 + e^1) = 1.313262."""
    losses, chosen, rejected = dpo_loss(
        torch.tensor([-5.0, -6.0]),
        torch.tensor([-7.0, -7.0]),
        torch.tensor([-5.0, -5.0]),
        torch.tensor([-7.0, -7.0]),
        1.0,
    )
    torch.testing.assert_close(losses, torch.tensor([0.693147, 1.313262]), atol=1e-6, rtol=0)
    torch.testing.assert_close(chosen, torch.tensor([0.0, -1.0]))
    torch.testing.assert_close(rejected, torch.tensor([0.0, 0.0]))


def test_cdpo_by_hand() -> None:
    """Standard pair, beta 0.5, eps 0.2: 0.8 * log(1 + e^-1) + 0.2 * log(1 + e^1)
    = 0.8 * 0.313262 + 0.2 * 1.313262 = 0.250609 + 0.262652 = 0.513262."""
    out = DPO(beta=0.5, label_smoothing=0.2)(pair())
    assert out.losses.item() == pytest.approx(0.513262, abs=1e-6)


def test_dpo_equal_logprobs_is_log2() -> None:
    """At initialization policy = reference, D = 0 and the loss is -log(1/2) = log 2 for any beta."""
    for beta in (0.1, 1.0, 10.0):
        out = DPO(beta=beta)(pair(-2.0, -2.0))
        assert out.losses.item() == pytest.approx(math.log(2.0), abs=1e-7)


def test_rpo_is_dpo_with_an_nll_weight() -> None:
    """RPO changes only what the module adds (nll_scale * NLL_w), not the preference term."""
    rpo = DPO(beta=0.5, nll_scale=1.0)
    assert rpo.nll_scale == 1.0 and DPO().nll_scale == 0.0
    assert rpo(pair()).losses.item() == pytest.approx(0.313262, abs=1e-6)


def test_length_normalized_dpo_uses_averages() -> None:
    """Chosen: -1/4 - (-2/4) = 0.25; rejected: -3/3 - (-2/3) = -0.333333; D = 0.583333; beta 1:
    loss = log(1 + e^-0.583333) = 0.443426. Rewards are logged over sums, as for every reference
    criterion: summed log-ratios +1 and -1 (not the averages 0.25 and -0.333333)."""
    criterion = DPO(beta=1.0, length_normalization=True)
    out = criterion(pair())
    assert criterion.reduction == "avg"
    assert out.losses.item() == pytest.approx(0.443426, abs=1e-6)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((1.0, -1.0))


def test_simpo_by_hand() -> None:
    """s_w = -2, s_l = -6: a_w = -2/4 = -0.5, a_l = -6/3 = -2; beta 2, gamma 2 * 0.25 = 0.5:
    2 * 1.5 - 0.5 = 2.5, loss = log(1 + e^-2.5) = 0.078889; rewards 2 * a = -1 and -4."""
    out = SimPO()(pair(-2.0, -6.0))
    assert out.losses.item() == pytest.approx(0.078889, abs=1e-6)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((-1.0, -4.0))


def test_simpo_gamma_knobs() -> None:
    """gamma given absolutely, or as gamma_beta_ratio * beta; simpo_loss takes the resolved gamma:
    a_w = a_l = -1, beta 1, gamma 1: loss = log(1 + e^1) = 1.313262."""
    assert SimPO().gamma == 0.5
    assert SimPO(beta=2.0, gamma=1.0).gamma == 1.0
    assert SimPO(beta=4.0, gamma_beta_ratio=0.5).gamma == 2.0
    losses, _, _ = simpo_loss(torch.tensor([-1.0]), torch.tensor([-1.0]), beta=1.0, gamma=1.0)
    assert losses.item() == pytest.approx(1.313262, abs=1e-6)


def test_cpo_by_hand() -> None:
    """s_w = -2, s_l = -6, beta 0.1: 0.1 * 4 = 0.4, loss = log(1 + e^-0.4) = 0.513015; rewards
    0.1 * s = -0.2 and -0.6. The NLL term is the module's (nll_scale defaults to 1)."""
    criterion = CPO()
    out = criterion(pair(-2.0, -6.0))
    assert out.losses.item() == pytest.approx(0.513015, abs=1e-6)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((-0.2, -0.6))
    assert criterion.nll_scale == 1.0 and not criterion.needs_reference
    assert cpo_loss(torch.tensor([-2.0]), torch.tensor([-6.0]), 0.1)[0].item() == pytest.approx(0.513015, abs=1e-6)


def test_orpo_by_hand() -> None:
    """a_w = -2/4 = -0.5, a_l = -6/3 = -2: log(1 - e^-0.5) = log 0.393469 = -0.932752,
    log(1 - e^-2) = log 0.864665 = -0.145413; log odds = 1.5 - (-0.932752 + 0.145413) = 2.287339;
    loss = 0.1 * log(1 + e^-2.287339) = 0.1 * 0.096706 = 0.0096706; rewards 0.1 * a = -0.05, -0.2."""
    criterion = ORPO()
    out = criterion(pair(-2.0, -6.0))
    assert out.losses.item() == pytest.approx(0.0096706, abs=1e-6)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((-0.05, -0.2))
    assert criterion.nll_scale == 1.0 and criterion.reduction == "avg" and not criterion.needs_reference


def test_orpo_lambda_scales_the_odds_term() -> None:
    """lambda 1 gives 10x the lambda 0.1 loss of the pair above: log(1 + e^-2.287339) = 0.096706."""
    assert ORPO(**{"lambda": 1.0})(pair(-2.0, -6.0)).losses.item() == pytest.approx(0.096706, abs=1e-6)


def test_orpo_at_certain_completions_is_large_and_finite() -> None:
    """a_w = 0 is clamped to -1e-6: log(1 - e^-1e-6) = log(1e-6) = -13.8155; with a_l = -1e4,
    log(1 - e^-1e4) = 0, so log odds = 1e4 + 13.8 and the loss ~ 0; swapped (a_l = 0, a_w = -1e4)
    log odds = -1e4 - 13.8155 and the loss = 0.1 * (1e4 + 13.8155) = 1001.38 (finite, no NaN)."""
    losses, _, _ = orpo_loss(torch.tensor([0.0, -1e4]), torch.tensor([-1e4, 0.0]), 0.1)
    torch.testing.assert_close(losses, torch.tensor([0.0, 1001.38155]), atol=1e-3, rtol=1e-6)


def test_log1mexp_is_accurate_at_both_ends() -> None:
    x = torch.tensor([-1e-5, -0.1, -0.6931, -5.0, -50.0])
    expected = torch.tensor([math.log(-math.expm1(v)) for v in x.tolist()])
    torch.testing.assert_close(log1mexp(x), expected, rtol=1e-5, atol=1e-6)
