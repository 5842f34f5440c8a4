"""A run that failed before its first optimizer step can be rerun, corrected, in the same
directory; one that trained is still protected."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from lightning.pytorch import Callback

import lit_prefopt.train as train_module
from lit_prefopt.train import train

SHORT = ("experiment=debug", "trainer.max_steps=2", "trainer.val_check_interval=2", "checkpoint.every_n_steps=2",
         "export_hf=false")


class FailsAtFirstStep(Callback):
    """Stands for any failure between the baseline validation and the first optimizer step."""

    def on_train_batch_start(self, *args) -> None:
        raise RuntimeError("failed before the first step")


def test_rerun_after_a_failure_before_the_first_step(compose, monkeypatch) -> None:
    build = train_module.build_trainer

    def build_failing(cfg):
        trainer = build(cfg)
        trainer.callbacks.append(FailsAtFirstStep())
        return trainer

    cfg = compose(*SHORT)
    run = Path(cfg.run_dir)
    monkeypatch.setattr(train_module, "build_trainer", build_failing)
    with pytest.raises(RuntimeError, match="failed before the first step"):
        train(cfg)
    assert (run / "metrics.csv").is_file(), "the baseline validation was logged"

    monkeypatch.setattr(train_module, "build_trainer", build)
    train(cfg)
    with open(run / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len([r for r in rows if r.get("train/loss")]) == 2
    assert len([r for r in rows if r.get("val/loss")]) == 2, "the baseline once (not twice) and the final validation"

    with pytest.raises(FileExistsError, match="already holds a run"):
        train(cfg)
