"""`model=qwen` and `model=mistral` train a checkpoint directory of their layout end to end.

The default kernels (shared prompt, chunked head) run on each: Qwen2's tied embeddings (the
chunked head's weight is the embedding), its tokenizer without BOS, and sliding-window attention.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lit_prefopt.train import train
from tests.architectures import save_tiny_layout
from tests.e2e.test_train_run import SHORT, column, read_metrics

EXPECTED_CLASS = {"qwen": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}


@pytest.mark.parametrize("layout", ["qwen", "mistral"])
def test_layout_trains_and_exports(compose, tiny_llama, tmp_path: Path, layout: str) -> None:
    start = save_tiny_layout(layout, tmp_path / layout, tiny_llama.path)
    cfg = compose(f"model={layout}", f"model.path={start}", "optimizer.lr=3e-3", *SHORT)
    train(cfg)
    run = Path(cfg.run_dir)

    losses = column(read_metrics(run), "train/loss")
    assert len(losses) == 4
    assert losses[0] == pytest.approx(0.6931, abs=2e-3), "DPO starts at log 2 (policy = reference)"
    assert losses[-1] < losses[0]

    exported = AutoModelForCausalLM.from_pretrained(run / "hf")
    assert type(exported).__name__ == EXPECTED_CLASS[layout]
    initial = AutoModelForCausalLM.from_pretrained(start)
    assert not torch.equal(exported.model.embed_tokens.weight, initial.model.embed_tokens.weight)
    if layout == "qwen":
        assert exported.lm_head.weight.data_ptr() == exported.model.embed_tokens.weight.data_ptr(), "still tied"
        assert AutoTokenizer.from_pretrained(run / "hf").bos_token is None
