"""Run as a script: FlexAttention log-probs of shared-prompt rows equal SDPA's, per checkpoint.

`python -m tests.flex_parity DIR...` exits non-zero on a mismatch. A separate process because
transformers' FlexAttention path can take the process down (segfault) instead of raising.
"""

from __future__ import annotations

import sys

import torch

from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.data.collate import with_shared_prompts
from lit_prefopt.kernels.logprobs import sequence_logprobs
from lit_prefopt.models.checkpoint import HFCheckpoint


def shared_batch(vocab: int) -> PreferenceBatch:
    """Three random pairs (prompts 6, 9, 3 tokens), longer than the test models' sliding window."""
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(4, vocab, (n,), generator=generator).tolist() for n in (6, 9, 3)]
    rows, scored = [], []
    for lengths in ((4, 1, 7), (2, 6, 5)):
        for prompt, n in zip(prompts, lengths):
            rows.append(prompt + torch.randint(4, vocab, (n,), generator=generator).tolist())
            scored.append([False] * len(prompt) + [True] * n)
    width = max(len(r) for r in rows)
    return with_shared_prompts(PreferenceBatch(
        input_ids=torch.tensor([r + [0] * (width - len(r)) for r in rows]),
        attention_mask=torch.tensor([[True] * len(r) + [False] * (width - len(r)) for r in rows]),
        completion_mask=torch.tensor([s + [False] * (width - len(s)) for s in scored]),
        pair_weights=torch.ones(3),
    ))


def main(directories: list[str]) -> int:
    for directory in directories:
        sdpa = HFCheckpoint(path=directory, attn_implementation="sdpa").load_policy().eval()
        flex = HFCheckpoint(path=directory, attn_implementation="flex_attention").load_policy().eval()
        batch = shared_batch(sdpa.config.vocab_size)
        try:
            sequence_logprobs(flex, batch, chunk_size=4)
            print(f"{directory}: flex_attention trained on CPU instead of being refused")
            return 1
        except ValueError as error:
            assert "cannot train on CPU" in str(error), error
        with torch.no_grad():
            expected, _ = sequence_logprobs(sdpa, batch, chunk_size=4)
            got, _ = sequence_logprobs(flex, batch, chunk_size=4)
        difference = (got - expected).abs().max().item()
        print(f"{directory}: max |flex - sdpa| = {difference:.2e}")
        if not difference <= 1e-5:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
