"""A Lightning callback that writes lit_prefopt's `StepLog`, added to a run as
`+callbacks.step_timer._target_=benchmarks.lightning_timer.StepTimer +callbacks.step_timer.path=FILE`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from benchmarks.step_log import EncodedTokens, StepLog
from lit_prefopt.data.batch import PreferenceBatch


class StepTimer(Callback):
    """Records each training batch's end with its real pairs, non-padding tokens and what was encoded."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.steps = StepLog()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: PreferenceBatch, batch_idx: int) -> None:
        self.steps.record(batch.num_real_pairs, batch.num_tokens(), encoded_tokens(batch, pl_module.checkpoint.chunked_logprobs))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.steps.write(self.path)


def encoded_tokens(batch: PreferenceBatch, chunked_logprobs: int) -> EncodedTokens:
    """What the policy's forward encodes for `batch`: the shared-prompt rows when the batch has
    them (lit_prefopt.kernels.logprobs), else the padded rows; the chunked head (`chunked_logprobs`
    > 0) runs the LM head on the scored completion tokens only, the plain path on every position."""
    if batch.shared_prefix is not None:
        positions, computed = batch.shared_prefix.input_ids.numel(), batch.shared_prefix.num_tokens
    else:
        positions, computed = batch.input_ids.numel(), int(batch.attention_mask.sum())
    head = int(batch.completion_mask.sum()) if chunked_logprobs > 0 else computed
    return EncodedTokens(positions, computed, head)
