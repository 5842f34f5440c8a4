"""The hf/ export: the source checkpoint's dtype (or export_dtype), loadable by transformers,
tied heads saved once, numbered files and an index past the file size limit."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

import lit_prefopt.models.export as export
from lit_prefopt.models.checkpoint import HFCheckpoint


def stored_dtypes(directory: Path) -> set[str]:
    dtypes = set()
    for path in directory.glob("*.safetensors"):
        with safe_open(path, framework="pt") as handle:
            dtypes |= {handle.get_slice(name).get_dtype() for name in handle.keys()}
    return dtypes


@pytest.fixture(scope="module")
def bf16_source(tiny_llama, tmp_path_factory) -> Path:
    """The tiny checkpoint stored in bfloat16 (as real checkpoints are)."""
    directory = tmp_path_factory.mktemp("bf16_source")
    AutoModelForCausalLM.from_pretrained(tiny_llama.path, dtype=torch.bfloat16).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("export_dtype, stored", [(None, "BF16"), ("float32", "F32")])
def test_export_keeps_the_source_dtype_unless_told(
    bf16_source: Path, tiny_llama, tmp_path: Path, export_dtype: str | None, stored: str
) -> None:
    """Training in float32 from a bf16 checkpoint exports bf16 (the float32 weights rounded once)."""
    checkpoint = HFCheckpoint(path=str(bf16_source), dtype="float32")
    policy = checkpoint.load_policy()
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(1e-3)  # "trained": no longer representable in bf16
    export.export_hf(SimpleNamespace(policy=policy, checkpoint=checkpoint), tiny_llama.load_tokenizer(), tmp_path,
                     is_global_zero=True, export_dtype=export_dtype)
    assert stored_dtypes(tmp_path) == {stored}
    dtype = torch.bfloat16 if export_dtype is None else torch.float32
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == str(dtype).removeprefix("torch.")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype="auto")
    for name, tensor in policy.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor.to(dtype), atol=0, rtol=0, msg=name)
    assert (tmp_path / "tokenizer.json").is_file() and loaded.config.use_cache


def test_tied_head_saved_once_and_big_models_split_into_indexed_files(tmp_path: Path, monkeypatch) -> None:
    config = LlamaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                         vocab_size=64, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    # 64 x 16 float32 embeddings are 4 KiB: a 5 KiB limit puts the embedding alone in file 1.
    monkeypatch.setattr(export, "MAX_SHARD_BYTES", 5 * 1024)
    export.save_policy(model, tmp_path, torch.float32, is_global_zero=True)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    files = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(files) > 1 and set(index["weight_map"].values()) == set(files)
    assert "lm_head.weight" not in index["weight_map"]
    assert index["weight_map"]["model.embed_tokens.weight"] == files[0]
    assert index["metadata"]["total_size"] == 4 * sum(p.numel() for p in model.parameters())
    loaded = LlamaForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, atol=0, rtol=0, msg=name)


def test_bad_export_dtype_is_refused_by_key() -> None:
    with pytest.raises(ValueError, match="export_dtype must be null .* got 'bf16'"):
        export.check_export_dtype("bf16")
