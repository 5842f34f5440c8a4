"""Rotary angles run at float32 matmul precision `highest` while the rest keeps the run's setting.

A CPU has no TF32, so the rounding itself cannot be shown here (the GPU check compares the angles
at long positions under `high` and `highest`); what is checked is that the rotary forward of the
policy and of the reference runs under `highest`, and that the setting comes back after it.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning
import pytest
import torch
from transformers import AutoModelForCausalLM

from lit_prefopt import DPOModule, PreferenceDataModule
from lit_prefopt.models.rotary_precision import keep_rotary_angles_exact
from lit_prefopt.paths import sample_data_path


@pytest.fixture
def high_precision() -> Iterator[None]:
    """`trainer=gpu`'s setting, restored afterwards for the other tests."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    yield
    torch.set_float32_matmul_precision(before)


def _record_precision(model: torch.nn.Module) -> list[str]:
    """The float32 matmul precision each rotary forward of `model` ran under."""
    seen: list[str] = []
    rotary = model.get_decoder().rotary_emb
    forward = rotary.forward
    rotary.forward = lambda *args, **kwargs: (seen.append(torch.get_float32_matmul_precision()), forward(*args, **kwargs))[1]
    return seen


def test_rotary_forward_runs_at_highest_and_the_setting_comes_back(tiny_llama, high_precision) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama.path)
    seen = _record_precision(model)
    model(input_ids=torch.ones(1, 5, dtype=torch.long))
    assert seen == ["high"]  # unguarded, the angles' matmul may run in TF32

    keep_rotary_angles_exact(model)
    keep_rotary_angles_exact(model)  # idempotent: one pair of hooks
    model(input_ids=torch.ones(1, 5, dtype=torch.long))
    assert seen == ["high", "highest"]
    assert torch.get_float32_matmul_precision() == "high"
    assert len(model.get_decoder().rotary_emb._forward_pre_hooks) == 1


def test_training_guards_the_policy_and_the_reference(tiny_llama, high_precision) -> None:
    policy = AutoModelForCausalLM.from_pretrained(tiny_llama.path)
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama.path)
    seen_policy, seen_reference = _record_precision(policy), _record_precision(reference)
    module = DPOModule(model=policy, reference_model=reference, lr=1e-3)
    data = PreferenceDataModule(train_files=[str(sample_data_path("train.jsonl"))], batch_size=2, shuffle=False)
    trainer = lightning.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    assert seen_policy and set(seen_policy) == {"highest"}
    assert seen_reference and set(seen_reference) == {"highest"}
    assert torch.get_float32_matmul_precision() == "high"
