"""The rest of the criterion family against hand-derived values, signs, extremes and dtypes.

Unless a case says otherwise the pair is s_w = -1, s_l = -3 with |y_w| = 4, |y_l| = 3 and
reference log-probs -2 for both, so the log-ratios are +1 (chosen) and -1 (rejected); with
beta = 0.5 the implicit rewards are r_w = 0.5, r_l = -0.5 and the margin beta*D = 1.
softplus(x) = log(1 + e^x); values below were computed by hand (to 6-7 digits).
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lit_prefopt.criteria.alphapo import AlphaPO
from lit_prefopt.criteria.apo import APO
from lit_prefopt.criteria.base import PairLogps
from lit_prefopt.criteria.bco import BCOPair
from lit_prefopt.criteria.discopop import DiscoPOP
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


def pair(chosen=-1.0, rejected=-3.0, ref_chosen=-2.0, ref_rejected=-2.0, dtype=torch.float32) -> PairLogps:
    t = lambda v: torch.tensor([v], dtype=dtype, requires_grad=True)  # noqa: E731
    return PairLogps(t(chosen), t(rejected), torch.tensor([4.0]), torch.tensor([3.0]), t(ref_chosen), t(ref_rejected))


HAND = [
    # hinge: relu(1 - 1) = 0; beta 0.25 gives margin 0.5 and relu(0.5) = 0.5.
    (Hinge(beta=0.5), 0.0),
    (Hinge(beta=0.25), 0.5),
    # robust: (0.9*softplus(-1) - 0.1*softplus(1)) / 0.8 = (0.281936 - 0.131326) / 0.8 = 0.188262.
    (RobustDPO(beta=0.5, label_smoothing=0.1), 0.188262),
    # NCA: softplus(-0.5) + 0.5*softplus(0.5) + 0.5*softplus(-0.5) = 0.474077 + 0.487039 + 0.237039.
    (NCAPair(beta=0.5), 1.198154),
    # SPPO: targets +-1/(2*0.5) = +-1 met exactly: 0; beta 0.25: (1-2)^2 + (-1+2)^2 = 2.
    (SPPOHard(beta=0.5), 0.0),
    (SPPOHard(beta=0.25), 2.0),
    # APO-zero: (1 - sig(0.5)) + sig(-0.5) = 2 * 0.377541 = 0.755081.
    (APO("zero", beta=0.5), 0.755081),
    # APO-down: sig(0.5) + 1 - sig(1) = 0.622459 + 1 - 0.731059 = 0.891401.
    (APO("down", beta=0.5), 0.891401),
    # EXO eps 0.1: 0.731059*(log 0.731059 - log 0.9) + 0.268941*(log 0.268941 - log 0.1)
    #            = 0.731059*(-0.207901) + 0.268941*(0.989323) = -0.151988 + 0.266070.
    (EXOPair(beta=0.5, label_smoothing=0.1), 0.114082),
    # DiscoPOP tau 0.05: mix = sig(20) ~ 1, so the loss is exp(-1) = 0.367879.
    (DiscoPOP(beta=0.5, tau=0.05), 0.367879),
    # IPO on averages: (-1/4 + 2/4) - (-3/3 + 2/3) = 0.25 + 0.333333 = 0.583333; (0.583333 - 1)^2.
    (IPO(beta=0.5), 0.173611),
    # f-DPO reverse KL is DPO: softplus(-1) = 0.313262.
    (FDivergenceDPO("reverse_kl", beta=0.5), 0.313262),
    # JS: (1 - softplus(1)) - (-1 - softplus(-1)) = -0.313262 + 1.313262 = 1; softplus(-0.5) = 0.474077.
    (FDivergenceDPO("js", beta=0.5), 0.474077),
    # forward KL: f'(u) = -1/u: -e^-1 + e^1 = 2.350402, times 0.5; softplus of minus that.
    (FDivergenceDPO("forward_kl", beta=0.5), math.log1p(math.exp(-0.5 * (math.e - 1 / math.e)))),
    # alpha 0.5: f'(u) = (1 - u^-0.5)/0.5: (-2e^-0.5) - (-2e^0.5) = 2.084381, times 0.5.
    (FDivergenceDPO("alpha", beta=0.5, alpha=0.5), math.log1p(math.exp(-0.5 * 2 * (math.exp(0.5) - math.exp(-0.5))))),
    # SLiC: relu(1 - (-1 + 3)) = 0.
    (SLiC(delta=1.0), 0.0),
    # AlphaPO alpha 0.5, beta 2, gamma 0.5: a_w = -0.25, a_l = -1;
    # r_w = 4(1 - e^0.125) = -0.532594, r_l = 4(1 - e^0.5) = -2.594885; 2.062291 - 0.5 = 1.562291;
    # softplus(-1.562291) = 0.190335.
    (AlphaPO(alpha=0.5, beta=2.0, gamma=0.5),
     math.log1p(math.exp(-(4 * (1 - math.exp(0.125)) - 4 * (1 - math.exp(0.5)) - 0.5)))),
    # WeightedSum DPO(beta .5) + 2 x Hinge(beta .25): 0.313262 + 2*0.5.
    (WeightedSum({"dpo": {"criterion": DPO(beta=0.5)}, "hinge": {"criterion": Hinge(beta=0.25), "weight": 2.0}}),
     1.313262),
]


@pytest.mark.parametrize("criterion,expected", HAND, ids=lambda v: type(v).__name__ if not isinstance(v, float) else "")
def test_hand_derived_values(criterion, expected: float) -> None:
    assert criterion(pair()).losses.item() == pytest.approx(expected, abs=2e-6)


def test_slic_hinge_is_active_when_the_margin_is_short() -> None:
    """s_w = -3, s_l = -2.5: relu(1 - (-0.5)) = 1.5."""
    assert SLiC()(pair(-3.0, -2.5)).losses.item() == pytest.approx(1.5)


def test_alphapo_at_alpha_zero_is_simpo() -> None:
    torch.testing.assert_close(AlphaPO(alpha=0.0)(pair()).losses, SimPO()(pair()).losses)


def test_discopop_is_logistic_for_negative_margins() -> None:
    """Swapped pair: margin -1, mix = sig(-20) ~ 0, loss = softplus(1) = 1.313262."""
    assert DiscoPOP(beta=0.5)(pair(-3.0, -1.0)).losses.item() == pytest.approx(1.313262, abs=1e-6)


def test_bco_running_mean_by_hand() -> None:
    """Step 1 rewards 0.5 and -0.5: delta 0, loss 2*softplus(-0.5) = 0.948154.
    Step 2, pair s_w = 0 (r_w = 1), s_l = -2 (r_l = 0): delta = (0.5 - 0.5 + 1 + 0)/4 = 0.25,
    loss = -log sig(1 - 0.25) - log sig(-(0 - 0.25)) = softplus(-0.75) + softplus(-0.25)
         = 0.386871 + 0.575939 = 0.962810.
    In eval mode the mean does not move."""
    criterion = BCOPair(beta=0.5)
    assert criterion(pair()).losses.item() == pytest.approx(0.948154, abs=1e-6)
    assert criterion(pair(0.0, -2.0)).losses.item() == pytest.approx(0.962810, abs=1e-6)
    assert criterion.delta.item() == pytest.approx(0.25)
    criterion.eval()
    criterion(pair(5.0, -9.0))
    assert criterion.delta.item() == pytest.approx(0.25)


SIGNED = [h[0] for h in HAND if not isinstance(h[0], (SLiC,))] + [SLiC(), BCOPair()]


@pytest.mark.parametrize("criterion", SIGNED, ids=lambda c: type(c).__name__)
def test_gradient_signs(criterion) -> None:
    """Log-ratios -0.5 (chosen) and +0.5 (rejected), inside every target margin: raising the
    rejected log-prob never helps; raising the chosen one helps, except under APO-down, whose
    point is to lower both likelihoods."""
    logps = pair(-2.5, -1.5)
    criterion(logps).losses.sum().backward()
    assert logps.rejected.grad.item() > 0
    if not (isinstance(criterion, APO) and criterion.anchor == "down"):
        assert logps.chosen.grad.item() < 0


@pytest.mark.parametrize("criterion", SIGNED, ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("values", [(-1e4, -1e4, 0.0, 0.0), (-1e-9, -1e4, -1e4, 0.0), (0.0, 0.0, -1e4, -1e4)])
def test_finite_at_extremes(criterion, values) -> None:
    logps = pair(*values)
    out = criterion(logps)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all() and torch.isfinite(logps.chosen.grad).all()


@pytest.mark.parametrize("criterion", SIGNED, ids=lambda c: type(c).__name__)
def test_float32_under_bfloat16_inputs(criterion) -> None:
    out = criterion(pair(dtype=torch.bfloat16))
    assert out.losses.dtype == torch.float32 and out.chosen_rewards.dtype == torch.float32


@pytest.mark.parametrize(
    "build,key",
    [
        (lambda: IPO(beta=0), "criterion.beta"),
        (lambda: RobustDPO(label_smoothing=0.5), "criterion.label_smoothing"),
        (lambda: APO("up"), "criterion.anchor"),
        (lambda: EXOPair(label_smoothing=0.0), "criterion.label_smoothing"),
        (lambda: DiscoPOP(tau=0), "criterion.tau"),
        (lambda: FDivergenceDPO("tv"), "criterion.divergence"),
        (lambda: FDivergenceDPO("alpha", alpha=1.5), "criterion.alpha"),
        (lambda: SLiC(delta=-1), "criterion.delta"),
        (lambda: WeightedSum({}), "criterion.terms"),
        (lambda: WeightedSum({"a": {"criterion": DPO(), "weight": -1}}), "criterion.terms.a.weight"),
    ],
)
def test_bad_hyperparameters_name_their_key(build, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build()


def test_weighted_sum_declares_what_its_terms_need() -> None:
    assert not WeightedSum({"simpo": {"criterion": SimPO()}}).needs_reference
    mixed = WeightedSum({"simpo": {"criterion": SimPO()}, "dpo": {"criterion": DPO(nll_scale=0.5), "weight": 2.0}},
                        nll_scale=0.1)
    assert mixed.needs_reference and mixed.nll_scale == pytest.approx(1.1)


def _bco_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        criterion = BCOPair(beta=0.5)
        halves = [pair(), pair(0.0, -2.0)]
        losses = [criterion(halves[rank]).losses.detach() for _ in range(2)]
        if rank == 0:
            torch.save({"delta": criterion.delta, "losses": torch.cat(losses)}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_bco_running_mean_is_global_under_two_processes(tmp_path: Path) -> None:
    """Two ranks with one pair each keep the same running mean as one process with both."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = str(tmp_path / "bco.pt")
    mp.start_processes(_bco_worker, args=(port, out), nprocs=2, start_method="spawn")
    result = torch.load(out, weights_only=True)
    single = BCOPair(beta=0.5)
    both = PairLogps(*(torch.cat([getattr(pair(), f), getattr(pair(0.0, -2.0), f)]).detach()
                       for f in ("chosen", "rejected", "chosen_lengths", "rejected_lengths", "ref_chosen", "ref_rejected")))
    expected = [single(both).losses[0] for _ in range(2)]
    assert result["delta"].item() == pytest.approx(single.delta.item(), abs=1e-6)
    torch.testing.assert_close(result["losses"], torch.stack(expected), atol=1e-6, rtol=0)
