"""What a user sees at the end of a run and during it: the printed summary, the progress bar in
optimizer steps, and an exported model readable like any file they create."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

import lit_prefopt.train as train_module
from lit_prefopt.callbacks.progress import StepProgressBar
from lit_prefopt.train import train


class TrainBarProbe(Callback):
    """Records the training bar's description, count and total after each batch."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        bar = trainer.progress_bar_callback.train_progress_bar
        self.seen.append((bar.desc, bar.n, bar.total))


def test_summary_progress_and_export_modes(compose, monkeypatch, capsys) -> None:
    probe = TrainBarProbe()
    build = train_module.build_trainer

    def build_with_probe(cfg):
        trainer = build(cfg)
        trainer.callbacks.append(probe)  # after the progress bar, so it sees what the bar shows
        return trainer

    monkeypatch.setattr(train_module, "build_trainer", build_with_probe)
    cfg = compose("experiment=debug", "trainer.max_steps=3", "trainer.accumulate_grad_batches=2")
    train(cfg)
    run = Path(cfg.run_dir)

    # 3 optimizer steps of 2 micro-batches: the bar counts steps out of max_steps, not batches.
    assert [(desc.rstrip(": "), n, total) for desc, n, total in probe.seen] == [
        ("Steps", 0, 3), ("Steps", 1, 3), ("Steps", 1, 3), ("Steps", 2, 3), ("Steps", 2, 3), ("Steps", 3, 3)]

    printed = capsys.readouterr().out
    assert "Run finished: 3 optimizer steps," in printed and "0 skipped steps" in printed
    assert "pairs: 0 truncated, 0 dropped, 0 skipped" in printed
    assert "validation (initial -> final):" in printed and "val/rewards/accuracy" in printed
    for path in (run / "hf", run / "metrics.csv", run / "summary.json", run / "checkpoints" / "last.ckpt"):
        assert str(path) in printed, path

    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (run / "hf").iterdir()}
    assert modes["model.safetensors"] == 0o666 & ~umask and set(modes.values()) == {0o666 & ~umask}, modes


def test_progress_bar_counts_steps_after_a_mid_epoch_resume_and_across_epochs(compose, monkeypatch) -> None:
    """Lightning skips the epoch-start hook when it resumes mid-epoch, and resets its bar at each new epoch."""
    probe = TrainBarProbe()
    build = train_module.build_trainer
    monkeypatch.setattr(train_module, "build_trainer", lambda cfg: (trainer := build(cfg)).callbacks.append(probe) or trainer)
    run = ("experiment=debug", "scheduler=constant", "validate_before_training=false", "data.val_files=null",
           "export_hf=false", "data.batch_size=128")  # 4 batches an epoch of the 512 sample pairs
    train(compose(*run, "trainer.max_steps=2"))
    probe.seen.clear()
    train(compose(*run, "trainer.max_steps=6", "ckpt_path=last"))
    assert [(desc.rstrip(": "), n, total) for desc, n, total in probe.seen] == [("Steps", n, 6) for n in range(3, 7)]


def test_progress_bar_can_be_turned_off(compose) -> None:
    """`trainer.enable_progress_bar=false` with the step bar configured as a callback: no bar (Lightning
    would refuse the pair)."""
    trainer = train_module.build_trainer(compose("trainer.enable_progress_bar=false"))
    assert trainer.progress_bar_callback is None
    assert isinstance(train_module.build_trainer(compose()).progress_bar_callback, StepProgressBar)


def test_without_a_logger_no_metrics_file_is_listed(compose, capsys) -> None:
    cfg = compose("experiment=debug", "trainer.max_steps=1", "logger=none", "validate_before_training=false",
                  "data.val_files=null", "export_hf=false")
    train(cfg)
    run = Path(cfg.run_dir)
    assert not (run / "metrics.csv").exists()
    assert json.loads((run / "summary.json").read_text())["metrics_csv"] is None
    assert "metrics.csv" not in capsys.readouterr().out
