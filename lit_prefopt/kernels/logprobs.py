"""Per-sequence log-probs of completion tokens: the bridge from a causal LM to the criteria.

Everything here runs in float32 whatever the model dtype (docs/ARCHITECTURE.md#log-probs-and-loss-conventions). The token
log-prob is `logit[target] - logsumexp(logits)`, which never materializes a second
full-vocabulary tensor the way `log_softmax` followed by `gather` would.

Two kernels produce the same (sums, lengths) from other layouts, so the criteria never fork:
a batch with `shared_prefix` encodes each prompt once (lit_prefopt.data.shared_prefix; its attention
rule reaches the model through the backend of lit_prefopt.kernels.attention), and
`chunk_size` > 0 runs the LM head only on the positions that predict completion tokens (prompts
are most of HH-RLHF's tokens), chunk by chunk, never holding full-vocabulary logits, inside the
model's own forward so FSDP's hooks still run (lit_prefopt.kernels.chunked_head).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.data.shared_prefix import ScoredTokens
from lit_prefopt.kernels.attention.backends import attention_inputs, check_usable, implementation_of
from lit_prefopt.kernels.chunked_head import scored_logprobs


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


def sequence_logprobs(model: nn.Module, batch: PreferenceBatch, chunk_size: int = 0) -> tuple[Tensor, Tensor]:
    """One forward over the batch; returns (summed completion log-probs [2B], lengths [2B]).

    Rows of the result follow the batch contract (chosen, then rejected) whatever the layout.
    """
    check_usable(implementation_of(model), batch.input_ids.device)
    if batch.shared_prefix is None and chunk_size == 0:
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        return masked_sums(token_logprobs(logits, batch.input_ids), batch.completion_mask)
    if batch.shared_prefix is not None:
        rows = batch.shared_prefix
        inputs = dict(input_ids=rows.input_ids, **attention_inputs(model, rows.segments))
        scored = rows.scored
    else:
        inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        scored = ScoredTokens.padded(batch.completion_mask)
    targets = inputs["input_ids"][scored.rows, scored.targets]
    if chunk_size == 0:
        logits = model(**inputs, use_cache=False).logits[scored.rows, scored.sources].float()
        logps = logits.gather(1, targets[:, None]).squeeze(1) - logits.logsumexp(dim=1)
    else:
        logps = scored_logprobs(model, inputs, (scored.rows, scored.sources), targets, chunk_size)
    sequences = 2 * batch.num_pairs
    sums = torch.zeros(sequences, dtype=torch.float32, device=logps.device).index_add(0, scored.sequences, logps)
    lengths = torch.bincount(scored.sequences, minlength=sequences).float()
    return sums, lengths
