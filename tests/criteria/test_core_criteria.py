"""DPO, SimPO, CPO and ORPO against hand-derived numbers, gradient signs and extremes."""

from __future__ import annotations

import math

import pytest
import torch

from lit_prefopt.criteria.base import PairLogps
from lit_prefopt.criteria.cpo import CPO
from lit_prefopt.criteria.dpo import DPO
from lit_prefopt.criteria.orpo import ORPO, log1mexp
from lit_prefopt.criteria.simpo import SimPO


def pair(chosen: float, rejected: float, chosen_len: float = 4.0, rejected_len: float = 3.0,
         ref_chosen: float = -2.0, ref_rejected: float = -2.0, dtype=torch.float32) -> PairLogps:
    t = lambda v: torch.tensor([v], dtype=dtype, requires_grad=dtype.is_floating_point)  # noqa: E731
    return PairLogps(t(chosen), t(rejected), torch.tensor([chosen_len]), torch.tensor([rejected_len]),
                     t(ref_chosen), t(ref_rejected))


def softplus(x: float) -> float:
    """-log sigmoid(-x) = log(1 + e^x), written out by hand."""
    return math.log(1.0 + math.exp(x))


def test_dpo_by_hand() -> None:
    """s_w=-1, s_l=-3, refs -2: D = (-1+2) - (-3+2) = 2, beta*D = 0.5*2 = 1.

    loss = -log sig(1) = log(1 + e^-1) = 0.313262; rewards 0.5*(1) = 0.5 and 0.5*(-1) = -0.5.
    """
    out = DPO(beta=0.5)(pair(-1.0, -3.0))
    assert out.losses.item() == pytest.approx(softplus(-1.0), abs=1e-6)
    assert out.losses.item() == pytest.approx(0.313262, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.5)
    assert out.rejected_rewards.item() == pytest.approx(-0.5)


def test_cdpo_by_hand() -> None:
    """Same pair, eps=0.2: 0.8*log(1+e^-1) + 0.2*log(1+e^1) = 0.250609 + 0.262652 = 0.513262."""
    out = DPO(beta=0.5, label_smoothing=0.2)(pair(-1.0, -3.0))
    assert out.losses.item() == pytest.approx(0.513262, abs=1e-6)


def test_dpo_equal_logprobs_is_log2() -> None:
    """At initialization policy = reference, D = 0 and the loss is -log(1/2) = log 2."""
    out = DPO()(pair(-2.0, -2.0))
    assert out.losses.item() == pytest.approx(math.log(2.0), abs=1e-7)


def test_length_normalized_dpo_uses_averages() -> None:
    """s_w=-1 over 4 tokens, ref -2 over 4: -0.25 - (-0.5) = 0.25; s_l=-3 over 3 vs -2/3:
    -1 - (-0.6667) = -0.3333; D = 0.58333, beta 1: loss = log(1 + e^-0.58333) = 0.444165."""
    out = DPO(beta=1.0, length_normalization=True)(pair(-1.0, -3.0))
    assert out.losses.item() == pytest.approx(softplus(-0.5833333), abs=1e-5)


def test_simpo_by_hand() -> None:
    """a_w = -2/4 = -0.5, a_l = -6/3 = -2, beta 2, gamma 0.5 (ratio 0.25): 2*1.5 - 0.5 = 2.5.

    loss = log(1 + e^-2.5) = 0.078889; rewards 2*(-0.5) = -1 and 2*(-2) = -4.
    """
    out = SimPO()(pair(-2.0, -6.0))
    assert out.losses.item() == pytest.approx(0.078889, abs=1e-6)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((-1.0, -4.0))
    assert SimPO(beta=2.0, gamma=1.0).gamma == 1.0
    assert SimPO(beta=4.0, gamma_beta_ratio=0.5).gamma == 2.0


def test_cpo_by_hand() -> None:
    """s_w=-2, s_l=-6, beta 0.1: 0.1*4 = 0.4, loss = log(1 + e^-0.4) = 0.513015 (NLL added by the module)."""
    criterion = CPO()
    out = criterion(pair(-2.0, -6.0))
    assert out.losses.item() == pytest.approx(0.513015, abs=1e-6)
    assert criterion.nll_scale == 1.0


def test_orpo_by_hand() -> None:
    """a_w = -0.5, a_l = -2: log(1-e^-0.5) = log 0.393469 = -0.932752,
    log(1-e^-2) = log 0.864665 = -0.145413; log odds = 1.5 + 0.787339 = 2.287339;
    loss = 0.1 * log(1 + e^-2.287339) = 0.1 * 0.096697 = 0.0096697; rewards 0.1*a."""
    out = ORPO()(pair(-2.0, -6.0))
    assert out.losses.item() == pytest.approx(0.1 * math.log(1 + math.exp(-2.287339)), abs=1e-6)
    assert out.losses.item() == pytest.approx(0.0096697, abs=1e-6)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((-0.05, -0.2))


def test_log1mexp_is_accurate_at_both_ends() -> None:
    x = torch.tensor([-1e-5, -0.1, -0.6931, -5.0, -50.0])
    expected = torch.tensor([math.log(-math.expm1(v)) for v in x.tolist()])
    torch.testing.assert_close(log1mexp(x), expected, rtol=1e-5, atol=1e-6)


CRITERIA = [DPO(), DPO(label_smoothing=0.1), SimPO(), CPO(), ORPO()]


@pytest.mark.parametrize("criterion", CRITERIA, ids=lambda c: type(c).__name__)
def test_raising_the_chosen_logprob_lowers_the_loss(criterion) -> None:
    logps = pair(-5.0, -4.0)
    criterion(logps).losses.sum().backward()
    assert logps.chosen.grad.item() < 0
    assert logps.rejected.grad.item() > 0


@pytest.mark.parametrize("criterion", CRITERIA, ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("chosen,rejected", [(-1e4, -1e4), (-1e4, -1e-9), (0.0, -1e4), (0.0, 0.0), (-1e-9, -1e4)])
def test_finite_at_extreme_logprobs(criterion, chosen: float, rejected: float) -> None:
    logps = pair(chosen, rejected, ref_chosen=-1e4, ref_rejected=0.0)
    out = criterion(logps)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all() and torch.isfinite(logps.chosen.grad).all()


@pytest.mark.parametrize("criterion", CRITERIA, ids=lambda c: type(c).__name__)
def test_bfloat16_inputs_give_float32_losses(criterion) -> None:
    out = criterion(pair(-3.0, -4.0, dtype=torch.bfloat16))
    assert out.losses.dtype == out.chosen_rewards.dtype == torch.float32


@pytest.mark.parametrize(
    "build,key",
    [
        (lambda: DPO(beta=-1), "criterion.beta"),
        (lambda: DPO(label_smoothing=0.7), "criterion.label_smoothing"),
        (lambda: DPO(nll_scale=-1), "criterion.nll_scale"),
        (lambda: SimPO(beta=0), "criterion.beta"),
        (lambda: SimPO(gamma=1.0, gamma_beta_ratio=0.5), "criterion.gamma"),
        (lambda: CPO(beta=-0.1), "criterion.beta"),
        (lambda: ORPO(**{"lambda": -1.0}), "criterion.lambda"),
        (lambda: ORPO(**{"lamda": 1.0}), "criterion.lamda"),
    ],
)
def test_bad_hyperparameters_name_their_key(build, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build()
