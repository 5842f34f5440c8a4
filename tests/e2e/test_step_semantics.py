"""Optimizer-step semantics: gradient accumulation, non-finite steps, reference from a run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

import lit_prefopt.criteria.dpo as dpo_module
from lit_prefopt.train import train

QUIET = ("validate_before_training=false", "data.val_files=null", "export_hf=false", "data.shuffle=false",
         "scheduler=constant", "trainer.gradient_clip_val=null")


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [r for r in csv.DictReader(file) if r.get("train/loss")]


def last_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_two_micro_batches_of_4_equal_one_batch_of_8(compose, tmp_path: Path) -> None:
    """SGD, whose update is linear in the gradient (Adam would amplify float noise in near-zero
    gradients into full-size updates and hide what is being compared)."""
    sgd = ("optimizer=sgd", "optimizer.lr=0.5")
    one = compose(*QUIET, *sgd, "trainer.max_steps=3", "data.batch_size=8", run_dir=tmp_path / "one")
    two = compose(*QUIET, *sgd, "trainer.max_steps=3", "data.batch_size=4", "trainer.accumulate_grad_batches=2",
                  run_dir=tmp_path / "two")
    train(one)
    train(two)
    a, b = last_state(tmp_path / "one"), last_state(tmp_path / "two")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4, msg=name)
    rows_a, rows_b = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert len(rows_a) == len(rows_b) == 3
    for ra, rb in zip(rows_a, rows_b):
        for name in ("train/loss", "train/rewards/margin", "train/rewards/accuracy", "train/logps/chosen",
                     "train/lengths/rejected", "train/grad_norm"):
            assert float(rb[name]) == pytest.approx(float(ra[name]), abs=1e-5, rel=1e-4), name


def poison_calls(monkeypatch, poisoned: set[int]) -> None:
    """Make the DPO loss NaN on the given (1-based) calls of the loss function."""
    real = dpo_module.dpo_loss
    calls = {"n": 0}

    def loss(*args, **kwargs):
        calls["n"] += 1
        losses, chosen, rejected = real(*args, **kwargs)
        return (losses * float("nan") if calls["n"] in poisoned else losses), chosen, rejected

    monkeypatch.setattr(dpo_module, "dpo_loss", loss)


def test_a_nan_step_is_skipped_and_counted(compose, monkeypatch) -> None:
    poison_calls(monkeypatch, {2})
    cfg = compose(*QUIET, "trainer.max_steps=4", "data.batch_size=4")
    train(cfg)
    logged = rows(Path(cfg.run_dir))
    assert [float(r["train/skipped_steps"]) for r in logged] == [0.0, 1.0, 1.0, 1.0]
    assert not torch.isfinite(torch.tensor(float(logged[1]["train/loss"])))
    state = last_state(Path(cfg.run_dir))
    assert all(torch.isfinite(t).all() for t in state.values()), "the NaN never reached the weights"


def test_nan_steps_in_a_row_stop_the_run_and_keep_the_last_checkpoint(compose, monkeypatch) -> None:
    poison_calls(monkeypatch, {3, 4, 5})
    cfg = compose(*QUIET, "trainer.max_steps=6", "data.batch_size=4", "checkpoint.every_n_steps=2",
                  "max_consecutive_skips=3")
    with pytest.raises(RuntimeError, match="3 optimizer steps in a row"):
        train(cfg)
    checkpoints = Path(cfg.run_dir) / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)["state_dict"]
    good = torch.load(checkpoints / "step=2.ckpt", weights_only=True)["state_dict"]
    for name, tensor in good.items():
        assert torch.equal(last[name], tensor), f"skipped steps changed {name}"


def test_a_run_whose_every_step_was_skipped_fails(compose, monkeypatch) -> None:
    """Fewer steps than max_consecutive_skips, all non-finite: the run trained nothing and must not say it finished."""
    poison_calls(monkeypatch, {1, 2})
    cfg = compose(*QUIET, "trainer.max_steps=2", "data.batch_size=4", "max_consecutive_skips=3")
    with pytest.raises(RuntimeError, match="all 2 optimizer steps had a non-finite loss"):
        train(cfg)
    assert not (Path(cfg.run_dir) / "summary.json").exists(), "no record of a finished run"


def test_reference_from_an_earlier_run_is_the_one_used(compose, tmp_path: Path) -> None:
    """Policy = base model; if the reference were the base too, every initial reward would be 0."""
    sft = compose(*QUIET[:2], "trainer.max_steps=3", "data.batch_size=8", "criterion=cpo", run_dir=tmp_path / "sft")
    train(sft)
    rewards = {}
    for name, reference in (("hf", tmp_path / "sft" / "hf"), ("ckpt", tmp_path / "sft" / "checkpoints" / "last.ckpt")):
        cfg = compose("trainer.max_steps=1", "data.batch_size=8", f"model.reference_path='{reference}'",
                      "export_hf=false", run_dir=tmp_path / name)
        train(cfg)
        initial = json.loads((tmp_path / name / "summary.json").read_text())["initial_val"]
        rewards[name] = initial["val/rewards/chosen"]
    assert abs(rewards["hf"]) > 1e-3, "the reference differs from the base policy"
    assert rewards["ckpt"] == pytest.approx(rewards["hf"], abs=1e-5), ".ckpt and hf/ of one run are the same reference"


class HeldGradients(Callback):
    """Writes, for each training batch, how many policy parameters hold a gradient as it ends."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.counts: list[int] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        self.counts.append(sum(p.grad is not None for p in pl_module.policy.parameters()))
        self.path.write_text(json.dumps(self.counts))


def test_gradients_are_freed_once_the_step_is_applied(compose, tmp_path: Path) -> None:
    """Lightning would zero them only after the next forward, holding a policy's worth of memory through
    it; the module frees them after the step. With 2 micro-batches per step the first one's are kept."""
    held = tmp_path / "held.json"
    train(compose(*QUIET, "trainer.max_steps=2", "data.batch_size=4", "trainer.accumulate_grad_batches=2",
                  "+callbacks.held._target_=tests.e2e.test_step_semantics.HeldGradients", f"+callbacks.held.path={held}"))
    tensors = 1 + 2 * 9 + 2  # embeddings; per tiny layer q, k, v, o, gate, up, down and 2 norms; final norm, head
    assert json.loads(held.read_text()) == [tensors, 0, tensors, 0]
