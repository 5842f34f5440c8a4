"""docs/ADDING_A_CRITERION.md cannot rot: its example is this code, tested and trained here."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from lit_prefopt.criteria.base import PairLogps
from lit_prefopt.train import train

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"
EXAMPLE_FILES = [EXAMPLES / "my_criteria" / "slic.py", EXAMPLES / "my_configs" / "criterion" / "slic.yaml"]


@pytest.fixture
def slic_module(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from my_criteria import slic

    return slic


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_guide_shows_the_example_files_verbatim(path: Path) -> None:
    guide = (REPO / "docs" / "ADDING_A_CRITERION.md").read_text()
    assert path.read_text().rstrip() in guide


def test_slic_loss_by_hand(slic_module) -> None:
    """delta = 1. Pair 1: s_w - s_l = -3 - (-5) = 2 >= 1, loss 0, no gradient.
    Pair 2: s_w - s_l = -5 - (-4.5) = -0.5, loss 1 - (-0.5) = 1.5; d/ds_w = -1, d/ds_l = +1."""
    chosen = torch.tensor([-3.0, -5.0], requires_grad=True)
    rejected = torch.tensor([-5.0, -4.5], requires_grad=True)
    criterion = slic_module.SLiCCriterion(delta=1.0)
    logps = PairLogps(chosen, rejected, torch.tensor([3.0, 4.0]), torch.tensor([5.0, 2.0]))
    output = criterion(logps)
    torch.testing.assert_close(output.losses, torch.tensor([0.0, 1.5]))
    output.losses.sum().backward()
    torch.testing.assert_close(chosen.grad, torch.tensor([0.0, -1.0]))
    torch.testing.assert_close(rejected.grad, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(output.chosen_rewards - output.rejected_rewards, torch.tensor([2.0, -0.5]))
    assert not criterion.needs_reference


def test_slic_rejects_a_bad_delta_naming_the_key(slic_module) -> None:
    with pytest.raises(ValueError, match=r"criterion\.delta"):
        slic_module.SLiCCriterion(delta=0.0)


@pytest.mark.slow
def test_slic_trains_through_the_entry(compose, slic_module) -> None:
    cfg = compose(f"hydra.searchpath=[file://{EXAMPLES / 'my_configs'}]", "criterion=slic", "experiment=debug",
                  "validate_before_training=false", "export_hf=false")
    assert isinstance(instantiate(cfg.criterion), slic_module.SLiCCriterion)
    metrics = train(cfg)
    with open(Path(cfg.run_dir) / "metrics.csv", newline="") as file:
        losses = [float(row["train/loss"]) for row in csv.DictReader(file) if row.get("train/loss")]
    assert len(losses) == cfg.trainer.max_steps and all(math.isfinite(x) for x in losses)
    assert math.isfinite(metrics["val/rewards/margin"])
