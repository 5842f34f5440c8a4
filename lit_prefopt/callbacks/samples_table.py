"""A W&B table of what the policy writes for a few validation prompts, as training goes.

Reward curves say the margin grows; they do not say whether the policy now writes the kind of
answer that was chosen, or something degenerate that the reward still prefers. Every N
validations this logs, for the first pairs of the validation set (the same pairs every time, so
rows compare across steps): the prompt, the chosen and rejected completions, the policy's own
greedy completion, and the criterion's implicit reward of each - the same reward as
`train/rewards/*`, so the table and the curves agree.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from lit_prefopt.data.batch import PreferenceBatch

COLUMNS = ["step", "id", "prompt", "chosen", "rejected", "greedy", "reward_chosen", "reward_rejected", "reward_greedy"]


class WandbSamplesTable(Callback):
    """Log `num_pairs` validation pairs with the policy's greedy completion every N validations.

    Does nothing without a `WandbLogger`. Every rank runs the generation on rank 0's pairs, so a
    sharded (FSDP) policy generates in lockstep; only rank 0 logs. The greedy completion has no
    reward when the reference log-probs come from the data (no reference model to score it).
    """

    def __init__(
        self, num_pairs: int = 4, every_n_validations: int = 1, max_new_tokens: int = 64, key: str = "val/samples"
    ) -> None:
        for name, value in (("num_pairs", num_pairs), ("every_n_validations", every_n_validations),
                            ("max_new_tokens", max_new_tokens)):
            if value < 1:
                raise ValueError(f"callbacks.wandb_samples.{name} must be >= 1, got {value}")
        self.num_pairs = num_pairs
        self.every_n_validations = every_n_validations
        self.max_new_tokens = max_new_tokens
        self.key = key
        self._pairs: PreferenceBatch | None = None
        self._validations = 0
        self._tokenizer: Any = None

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._pairs is None and batch_idx == 0 and dataloader_idx == 0:
            self._pairs = move_data_to_device(first_pairs(batch, self.num_pairs), "cpu")

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        if logger is None or trainer.sanity_checking or self._pairs is None:
            return
        self._validations += 1
        if (self._validations - 1) % self.every_n_validations:
            return
        pairs = move_data_to_device(trainer.strategy.broadcast(self._pairs, src=0), pl_module.device)
        rows = self.rows(pl_module, pairs, trainer.global_step)
        if trainer.is_global_zero:
            logger.log_table(key=self.key, columns=COLUMNS, data=rows, step=trainer.global_step)

    @torch.no_grad()
    def rows(self, module: LightningModule, pairs: PreferenceBatch, step: int) -> list[list[Any]]:
        """One table row per pair: texts, greedy completion and implicit rewards."""
        if self._tokenizer is None:
            self._tokenizer = module.checkpoint.load_tokenizer()
        rewards = module.criterion(module.pair_logps(pairs))
        rows = []
        for i in range(pairs.num_pairs):
            prompt = prompt_tokens(pairs, i)
            greedy = self.greedy_completion(module, prompt)
            rows.append([
                step,
                pairs.ids[i] if i < len(pairs.ids) else "",
                self.decode(prompt),
                self.decode(completion_tokens(pairs, i)),
                self.decode(completion_tokens(pairs, pairs.num_pairs + i)),
                self.decode(greedy),
                float(rewards.chosen_rewards[i]),
                float(rewards.rejected_rewards[i]),
                greedy_reward(module, prompt, greedy),
            ])
        return rows

    def decode(self, ids: Tensor) -> str:
        return self._tokenizer.decode(ids.tolist(), skip_special_tokens=True)

    def greedy_completion(self, module: LightningModule, prompt: Tensor) -> Tensor:
        """The policy's greedy continuation of `prompt` (up to max_new_tokens, EOS included)."""
        generated = module.policy.generate(
            input_ids=prompt[None],
            attention_mask=torch.ones_like(prompt)[None],
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=self._tokenizer.pad_token_id,
            eos_token_id=self._tokenizer.eos_token_id,
        )
        return generated[0, prompt.numel():]


def first_pairs(batch: PreferenceBatch, count: int) -> PreferenceBatch:
    """The first `count` real (non-padding) pairs of a batch, as a batch of their own (padded rows)."""
    pairs = batch.num_pairs
    keep = (batch.pair_weights > 0).nonzero().flatten()[:count]
    rows = torch.cat([keep, keep + pairs])
    return dataclasses.replace(
        batch,
        input_ids=batch.input_ids[rows],
        attention_mask=batch.attention_mask[rows],
        completion_mask=batch.completion_mask[rows],
        pair_weights=batch.pair_weights[keep],
        reference_chosen=None if batch.reference_chosen is None else batch.reference_chosen[keep],
        reference_rejected=None if batch.reference_rejected is None else batch.reference_rejected[keep],
        ids=[batch.ids[j] for j in keep.tolist()] if batch.ids else [],
        shared_prefix=None,  # the padded rows say the same; a kernel uses them when this is unset
        counts={},
    )


def prompt_tokens(batch: PreferenceBatch, row: int) -> Tensor:
    """The prompt of a row: its real tokens before the first completion token."""
    start = int(batch.completion_mask[row].nonzero()[0])
    return batch.input_ids[row, :start][batch.attention_mask[row, :start].bool()]


def completion_tokens(batch: PreferenceBatch, row: int) -> Tensor:
    return batch.input_ids[row][batch.completion_mask[row].bool()]


def greedy_reward(module: LightningModule, prompt: Tensor, completion: Tensor) -> float | None:
    """The criterion's implicit reward of `prompt + completion`, scored like a chosen completion."""
    if module.criterion.needs_reference and not module.reference_source.scores_any_batch:
        return None
    row = torch.cat([prompt, completion]).unsqueeze(0).repeat(2, 1)  # the same text as chosen and rejected
    scored = torch.zeros_like(row, dtype=torch.bool)
    scored[:, prompt.numel():] = True
    batch = PreferenceBatch(
        input_ids=row,
        attention_mask=torch.ones_like(row),
        completion_mask=scored,
        pair_weights=torch.ones(1, device=row.device),
    )
    return float(module.criterion(module.pair_logps(batch)).chosen_rewards[0])
