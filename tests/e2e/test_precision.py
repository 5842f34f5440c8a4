"""Mixed and low precision: log-probs and losses stay float32 whatever the model dtype."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from lit_prefopt.criteria.dpo import DPO
from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.models.tiny import TinyLlama
from lit_prefopt.module import PreferenceModule
from lit_prefopt.train import train

IDS = torch.tensor([[0, 5, 9, 33, 2, 7], [0, 5, 9, 40, 41, 2]])
BATCH = PreferenceBatch(IDS, torch.ones_like(IDS), torch.tensor([[0, 0, 0, 1, 1, 1]] * 2, dtype=torch.bool), torch.ones(1))


def test_bfloat16_model_gives_float32_logprobs(tiny_llama) -> None:
    checkpoint = TinyLlama(cache_dir=str(Path(tiny_llama.path).parents[1]), dtype="bfloat16")
    module = PreferenceModule(checkpoint, DPO(), optimizer=partial(torch.optim.AdamW, lr=1e-3))
    module.policy = checkpoint.load_policy()
    module.__dict__["reference"] = checkpoint.load_reference()
    assert next(module.policy.parameters()).dtype == torch.bfloat16
    logps = module.pair_logps(BATCH)
    assert logps.chosen.dtype == logps.ref_chosen.dtype == torch.float32
    assert module.criterion(logps).losses.dtype == torch.float32


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_low_precision_runs_train(compose, precision: str) -> None:
    cfg = compose(f"trainer.precision={precision}", "trainer.max_steps=3", "data.batch_size=4",
                  "validate_before_training=false", "export_hf=false", "model.gradient_checkpointing=true")
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert metrics["train/skipped_steps"] == 0
