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
from lit_prefopt.reference.source import LiveReference
from lit_prefopt.train import train

IDS = torch.tensor([[0, 5, 9, 33, 2, 7], [0, 5, 9, 40, 41, 2]])
BATCH = PreferenceBatch(IDS, torch.ones_like(IDS), torch.tensor([[0, 0, 0, 1, 1, 1]] * 2, dtype=torch.bool), torch.ones(1))


def test_bfloat16_model_gives_float32_logprobs(tiny_llama) -> None:
    checkpoint = TinyLlama(cache_dir=str(Path(tiny_llama.path).parents[1]), dtype="bfloat16")
    module = PreferenceModule(checkpoint, DPO(), optimizer=partial(torch.optim.AdamW, lr=1e-3))
    module.policy = checkpoint.load_policy()
    module.reference_source = LiveReference(checkpoint, checkpoint.chunked_logprobs, checkpoint.load_reference())
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


@pytest.mark.parametrize("overrides, setting", [
    (("trainer.precision=bf16-true",), "trainer.precision=bf16-true"),
    (("model.dtype=bfloat16",), "model.dtype=bfloat16"),
])
def test_bf16_weights_whose_adamw_steps_round_away_are_refused(compose, overrides, setting: str) -> None:
    """At lr 5e-7 a step is below half the bf16 spacing of nearly every weight of |w| > 2.6e-4."""
    cfg = compose(*overrides, "optimizer.lr=5e-7", "trainer.max_steps=1", "validate_before_training=false",
                  "export_hf=false")
    with pytest.raises(ValueError, match=f"{setting} with optimizer.lr=5e-07: AdamW .* round away .*bf16-mixed"):
        train(cfg)


def test_reference_dtype_defaults_to_the_policys_compute_dtype(tiny_llama) -> None:
    checkpoint = TinyLlama(cache_dir=str(Path(tiny_llama.path).parents[1]))
    assert checkpoint.reference_dtype("32-true") == "float32"
    assert checkpoint.reference_dtype("bf16-mixed") == checkpoint.reference_dtype("bf16-true") == "bfloat16"
    pinned = TinyLlama(cache_dir=str(Path(tiny_llama.path).parents[1]), reference_dtype="float32")
    assert pinned.reference_dtype("bf16-mixed") == "float32"
    reference = checkpoint.load_reference(dtype=checkpoint.reference_dtype("bf16-mixed"))
    assert {p.dtype for p in reference.parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match="model.reference_dtype must be null or one of"):
        TinyLlama(cache_dir=str(Path(tiny_llama.path).parents[1]), reference_dtype="bf16")


def test_gpu_trainer_enables_tf32_and_real_models_checkpoint_activations(compose, tmp_path: Path) -> None:
    from hydra.utils import instantiate

    gpu = compose("trainer=gpu", "model=llama", f"model.path={tmp_path}")
    assert gpu.trainer.float32_matmul_precision == "high" and gpu.model.gradient_checkpointing is True
    assert gpu.model.reference_dtype is None
    assert compose().model.gradient_checkpointing is False
    try:
        instantiate(gpu.trainer, accelerator="cpu", devices=1, logger=False)
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision("highest")
