"""After a run: the summary and the curves in the run directory; during it, the progress bar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.pytorch import Callback, LightningModule, Trainer

import lit_prefopt.train as train_module
from lit_prefopt.train import train

PROGRESS_BAR = {"train/loss", "train/rewards/margin", "train/rewards/accuracy", "train/tokens_per_s"}


class ProgressBarProbe(Callback):
    """Records what the progress bar shows at the end of training."""

    shown: dict[str, object] = {}

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.shown = dict(trainer.progress_bar_callback.get_metrics(trainer, pl_module))


@pytest.mark.slow
def test_default_run_writes_summary_and_curves_and_shows_progress(compose, monkeypatch) -> None:
    probe = ProgressBarProbe()
    build = train_module.build_trainer

    def build_with_probe(cfg):
        trainer = build(cfg)
        trainer.callbacks.append(probe)
        return trainer

    monkeypatch.setattr(train_module, "build_trainer", build_with_probe)
    cfg = compose("experiment=debug")
    train(cfg)
    run = Path(cfg.run_dir)

    assert PROGRESS_BAR <= set(probe.shown), probe.shown

    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == cfg.trainer.max_steps
    assert summary["initial_val"] and set(summary["final_val"]) >= {"val/loss", "val/rewards/accuracy"}
    assert Path(summary["last_checkpoint"]).exists() and Path(summary["hf_export"]).is_dir()
    curves = (run / "curves.png").read_bytes()
    assert curves.startswith(b"\x89PNG") and len(curves) > 5000
