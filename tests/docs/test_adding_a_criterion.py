"""docs/ADDING_A_CRITERION.md cannot rot: its example is this code, tested and trained here."""

from __future__ import annotations

import csv
import inspect
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from lit_prefopt import module_class
from lit_prefopt.criteria.base import PairLogps
from lit_prefopt.train import train

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"
EXAMPLE_FILES = [EXAMPLES / "my_criteria" / "dpop.py", EXAMPLES / "my_configs" / "criterion" / "dpop.yaml"]


@pytest.fixture
def dpop_module(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from my_criteria import dpop

    return dpop


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_guide_shows_the_example_files_verbatim(path: Path) -> None:
    guide = (REPO / "docs" / "ADDING_A_CRITERION.md").read_text()
    assert path.read_text().rstrip() in guide


def test_dpop_loss_by_hand(dpop_module) -> None:
    """Defaults beta = 0.1, lambda = 50. Both pairs have DPO's margin D = 2, so DPO gives them
    the same loss; DPOP separates them by whether the chosen log-prob fell below the reference's.

    Pair 1: s_w - s_w^ref = -3 - (-4) = 1, s_l - s_l^ref = -6 - (-5) = -1, D = 2, no penalty.
      z = 0.1 * 2 = 0.2, loss = log(1 + e^-0.2) = 0.598139.
      dL/dz = -sig(-z); dz/ds_w = beta, dz/ds_l = -beta:
      d/ds_w = -0.1 sig(-0.2) = -0.045017, d/ds_l = +0.045017.
    Pair 2: s_w - s_w^ref = -5 - (-4) = -1, s_l - s_l^ref = -8 - (-5) = -3, D = 2, penalty
      max(0, -4 - (-5)) = 1. z = 0.1 * (2 - 50 * 1) = -4.8, loss = 4.8 + log(1 + e^-4.8) = 4.808196.
      dz/ds_w = beta * (1 + lambda) = 5.1, so d/ds_w = -5.1 sig(4.8) = -5.058371 (51 times
      DPO's pull up on s_w), d/ds_l = +0.1 sig(4.8) = +0.099184.
    Rewards beta * (s - s_ref): chosen (0.1, -0.1), rejected (-0.1, -0.3).
    """
    chosen = torch.tensor([-3.0, -5.0], requires_grad=True)
    rejected = torch.tensor([-6.0, -8.0], requires_grad=True)
    logps = PairLogps(
        chosen,
        rejected,
        torch.tensor([3.0, 4.0]),
        torch.tensor([5.0, 2.0]),
        ref_chosen=torch.tensor([-4.0, -4.0]),
        ref_rejected=torch.tensor([-5.0, -5.0]),
    )
    criterion = dpop_module.DPOPCriterion()
    output = criterion(logps)
    torch.testing.assert_close(output.losses, torch.tensor([0.598139, 4.808196]))
    output.losses.sum().backward()
    torch.testing.assert_close(chosen.grad, torch.tensor([-0.045017, -5.058371]))
    torch.testing.assert_close(rejected.grad, torch.tensor([0.045017, 0.099184]))
    torch.testing.assert_close(output.chosen_rewards, torch.tensor([0.1, -0.1]))
    torch.testing.assert_close(output.rejected_rewards, torch.tensor([-0.1, -0.3]))
    assert not output.chosen_rewards.requires_grad
    assert criterion.needs_reference


def test_dpop_needs_reference_logps(dpop_module) -> None:
    logps = PairLogps(torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1))
    with pytest.raises(ValueError, match="reference"):
        dpop_module.DPOPCriterion()(logps)


def test_dpop_rejects_a_negative_lambda_naming_the_key(dpop_module) -> None:
    with pytest.raises(ValueError, match=r"criterion\.dpop_lambda"):
        dpop_module.DPOPCriterion(dpop_lambda=-1.0)


def test_dpop_gets_a_module_from_python(dpop_module) -> None:
    """The guide's Python snippet: the generated module takes DPOP's hyperparameters by name."""
    dpop_class = module_class(dpop_module.DPOPCriterion)
    assert dpop_class.__name__ == "DPOPCriterionModule"
    assert {"beta", "dpop_lambda", "nll_scale", "lr"} <= set(inspect.signature(dpop_class).parameters)
    module = dpop_class(model="/ckpts/Llama-3.2-1B-Instruct", dpop_lambda=5.0, lr=5e-7)
    assert isinstance(module.criterion, dpop_module.DPOPCriterion) and module.criterion.dpop_lambda == 5.0


@pytest.mark.slow
def test_dpop_trains_through_the_entry(compose, dpop_module) -> None:
    cfg = compose(
        f"hydra.searchpath=[file://{EXAMPLES / 'my_configs'}]",
        "criterion=dpop",
        "experiment=debug",
        "validate_before_training=false",
        "export_hf=false",
    )
    assert isinstance(instantiate(cfg.criterion), dpop_module.DPOPCriterion)
    metrics = train(cfg)
    with open(Path(cfg.run_dir) / "metrics.csv", newline="") as file:
        losses = [float(row["train/loss"]) for row in csv.DictReader(file) if row.get("train/loss")]
    assert len(losses) == cfg.trainer.max_steps and all(math.isfinite(x) for x in losses)
    assert math.isfinite(metrics["val/rewards/margin"])
