"""Per-sequence log-probs of completion tokens: the bridge from a causal LM to the criteria.

Everything here runs in float32 whatever the model dtype (DESIGN.md section 4). The token
log-prob is `logit[target] - logsumexp(logits)`, which never materializes a second
full-vocabulary tensor the way `log_softmax` followed by `gather` would.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_prefopt.data.batch import PreferenceBatch


def token_logprobs(logits: Tensor, input_ids: Tensor) -> Tensor:
    """Log-prob of each token given its prefix: [N, T] -> [N, T], column 0 set to 0.

    `logits[:, t]` predicts `input_ids[:, t + 1]`, so the result is aligned with `input_ids`
    and can be masked with the batch's `completion_mask` directly.
    """
    shifted = logits[:, :-1].float()
    targets = input_ids[:, 1:].unsqueeze(-1)
    picked = shifted.gather(-1, targets).squeeze(-1) - shifted.logsumexp(dim=-1)
    return torch.nn.functional.pad(picked, (1, 0))


def masked_sums(token_logps: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Summed log-probs and token counts over the masked (completion) tokens of each row."""
    mask = mask.to(token_logps.dtype)
    return (token_logps * mask).sum(dim=1), mask.sum(dim=1)


def sequence_logprobs(model: nn.Module, batch: PreferenceBatch) -> tuple[Tensor, Tensor]:
    """One forward over all 2B rows; returns (summed completion log-probs, completion lengths)."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    return masked_sums(token_logprobs(logits, batch.input_ids), batch.completion_mask)
