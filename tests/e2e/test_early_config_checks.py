"""Optimizer, scheduler, trainer and sweep settings that cannot train fail before any model is
built or loaded (and before the run directory is touched), naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_prefopt.train import train

BAD_SETTINGS = [
    (("optimizer.lr=-1",), r"optimizer\.lr must be a number > 0, got -1"),
    (("optimizer.lr=0",), r"optimizer\.lr must be a number > 0, got 0"),
    (("optimizer.betas=[0.9,1.5]",), r"optimizer\.betas must be two numbers in \[0, 1\)"),
    (("optimizer.weight_decay=-0.1",), r"optimizer\.weight_decay must be a number >= 0"),
    (("optimizer.eps=0",), r"optimizer\.eps must be a number > 0"),
    (("optimizer=sgd", "optimizer.momentum=-1"), r"optimizer\.momentum must be a number >= 0"),
    (("scheduler.warmup_steps=100",), r"scheduler\.warmup_steps=100 is not below trainer\.max_steps=100"),
    (("scheduler=constant", "scheduler.warmup_steps=-1"), r"scheduler\.warmup_steps must be a whole number >= 0"),
    (("scheduler.final_lr_scale=2",), r"scheduler\.final_lr_scale must be a number in \[0, 1\]"),
    (("scheduler.total_steps=50",), r"scheduler\.total_steps=50 ends before trainer\.max_steps=100 .* learning rate 0"),
    (("trainer.max_steps=0",), r"trainer\.max_steps must be a whole number of optimizer steps >= 1, got 0"),
    (("trainer.max_steps=-1",), r"trainer\.max_steps must be .* got -1"),
    (("trainer.accumulate_grad_batches=0",), r"trainer\.accumulate_grad_batches must be a whole number >= 1, got 0"),
    (("trainer.log_every_n_steps=0",), r"trainer\.log_every_n_steps must be a whole number >= 1, got 0"),
    (("trainer.gradient_clip_val=-1",), r"trainer\.gradient_clip_val must be a number >= 0, got -1"),
    (("seed=abc",), r"seed must be a whole number, got 'abc'"),
    (("+trainer.strategy=ddp",), r"trainer\.strategy is built from the `strategy` config group"),
    (("hparams_search=dpo_optuna", "data.val_files=null"),
     r"optimized_metric=val/rewards/accuracy, but data\.val_files is empty"),
]


@pytest.fixture
def nothing_loads(monkeypatch) -> list[str]:
    """Records every attempt to build or load a model."""
    calls: list[str] = []
    monkeypatch.setattr("lit_prefopt.models.tiny.TinyLlama.prepare", lambda self: calls.append("prepare"))
    monkeypatch.setattr("lit_prefopt.models.checkpoint.HFCheckpoint.load_policy",
                        lambda self, *args, **kwargs: calls.append("policy"))
    return calls


@pytest.mark.parametrize("overrides, message", BAD_SETTINGS, ids=[" ".join(o) for o, _ in BAD_SETTINGS])
def test_bad_setting_fails_first_naming_the_key(compose, nothing_loads, overrides, message) -> None:
    cfg = compose(*overrides)
    with pytest.raises(ValueError, match=message):
        train(cfg)
    assert nothing_loads == []
    assert list(Path(cfg.run_dir).iterdir()) == [], "the run directory was written to"
