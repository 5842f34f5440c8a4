"""The reference log-prob cache: same losses and gradients as a live reference, and a key that
changes whenever the reference, tokenizer, data or data settings change."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer, seed_everything

from lit_prefopt.callbacks.reference_cache import ReferenceLogpCache, cache_key
from lit_prefopt.criteria.base import Criterion, CriterionOutput, PairLogps
from lit_prefopt.data.datamodule import PreferenceDataModule
from lit_prefopt.models.checkpoint import HFCheckpoint
from lit_prefopt.models.tiny import build_tokenizer
from lit_prefopt.module import PreferenceModule
from lit_prefopt.paths import sample_data_path

SETTINGS = {"max_seq_len": 128, "truncation": "truncate", "mask_source_tokens": True, "on_bad_record": "error"}


class _ReferenceMargin(Criterion):
    """-log sig(D): a loss whose value and gradient depend on the reference log-probs."""

    needs_reference = True

    def forward(self, logps: PairLogps) -> CriterionOutput:
        ref_chosen, ref_rejected = logps.require_reference()
        margin = (logps.chosen - ref_chosen) - (logps.rejected - ref_rejected)
        return CriterionOutput(-F.logsigmoid(margin), margin.detach(), -margin.detach())


class _Recorder(Callback):
    """Each step's loss and the gradient of every policy parameter before the update."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.grads.append({n: p.grad.clone() for n, p in pl_module.policy.named_parameters() if p.grad is not None})


def _fit(checkpoint: HFCheckpoint, cache_dir: Path, enabled: bool) -> tuple[_Recorder, PreferenceModule]:
    seed_everything(0)
    data = PreferenceDataModule(train_files=[str(sample_data_path("train.jsonl"))], batch_size=4, max_seq_len=128, shuffle=False)
    data.set_tokenizer(checkpoint.load_tokenizer())
    module = PreferenceModule(checkpoint, _ReferenceMargin(), optimizer=partial(torch.optim.SGD, lr=0.1))
    recorder = _Recorder()
    cache = ReferenceLogpCache(str(cache_dir), enabled)
    trainer = Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[cache, recorder])
    trainer.fit(module, datamodule=data)
    if enabled:  # keyed by the datamodule's files and settings (the module carries no run config)
        key = cache_key(checkpoint.reference_path, checkpoint.load_tokenizer(), [str(sample_data_path("train.jsonl"))],
                        SETTINGS, checkpoint.dtype)
        assert cache.entry == cache_dir / "reference_logps" / key
    return recorder, module


def test_cached_reference_gives_the_live_losses_and_gradients(tiny_llama, tmp_path: Path, monkeypatch) -> None:
    live, live_module = _fit(tiny_llama, tmp_path / "cache", enabled=False)
    assert live_module.reference is not None and not live_module.reference.training
    assert not any(p.requires_grad for p in live_module.reference.parameters())
    assert not [k for k in live_module.state_dict() if "reference" in k], "the frozen model is never saved"
    assert len(live.losses) == len(live.grads) == 2 and all(live.grads), "two recorded steps with gradients"
    cold, cold_module = _fit(tiny_llama, tmp_path / "cache", enabled=True)
    assert cold_module.reference is None  # the module never loaded one
    monkeypatch.setattr(HFCheckpoint, "load_reference", lambda *a, **k: pytest.fail("warm cache loaded the reference"))
    warm, _ = _fit(tiny_llama, tmp_path / "cache", enabled=True)
    for run in (cold, warm):
        torch.testing.assert_close(torch.tensor(run.losses), torch.tensor(live.losses), atol=1e-5, rtol=1e-5)
        for got, want in zip(run.grads, live.grads):
            for name, grad in got.items():
                torch.testing.assert_close(grad, want[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.fixture
def inputs(tiny_llama, tmp_path: Path) -> dict:
    """A private copy of the reference and the data, so the test may change them."""
    reference = tmp_path / "reference"
    shutil.copytree(tiny_llama.path, reference)
    data = tmp_path / "train.jsonl"
    shutil.copy(sample_data_path("train.jsonl"), data)
    return {"reference_dir": str(reference), "tokenizer": tiny_llama.load_tokenizer(), "data_files": [str(data)],
            "data_settings": dict(SETTINGS), "dtype": "float32"}


def test_same_inputs_same_key(inputs: dict) -> None:
    assert cache_key(**inputs) == cache_key(**inputs)


def test_key_changes_with_reference_weights(inputs: dict) -> None:
    before = cache_key(**inputs)
    weights = next(Path(inputs["reference_dir"]).glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x40")  # last weight := 2.0
    assert cache_key(**inputs) != before


def test_key_changes_with_tokenizer(inputs: dict) -> None:
    before = cache_key(**inputs)
    inputs["tokenizer"] = build_tokenizer(["a different corpus", "of texts"], vocab_size=300)
    assert cache_key(**inputs) != before


def test_key_changes_with_data(inputs: dict) -> None:
    before = cache_key(**inputs)
    data = Path(inputs["data_files"][0])
    data.write_text(data.read_text().replace("a", "b", 1))
    assert cache_key(**inputs) != before


@pytest.mark.parametrize("setting, value", [("max_seq_len", 64), ("truncation", "drop")])
def test_key_changes_with_data_settings(inputs: dict, setting: str, value) -> None:
    before = cache_key(**inputs)
    inputs["data_settings"][setting] = value
    assert cache_key(**inputs) != before
