"""The LightningModule shared by every criterion: policy, optional frozen reference, the step.

`criterion_modules.py` derives one subclass per registered criterion from it (`DPOModule`, ...),
which adds only a constructor for Python users; everything a step does is here.

The criterion declares what it needs (`needs_reference`) and holds the loss math; this module
never branches on its type. A step is one policy forward over chosen and rejected together,
reference log-probs (from the data, or one no-grad reference forward), then the criterion.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import GradClipAlgorithmType
from torch import Tensor, nn
from torchmetrics import MeanMetric
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lit_prefopt.criteria.base import Criterion, PairLogps
from lit_prefopt.data.batch import DATA_COUNTERS, PreferenceBatch
from lit_prefopt.gradients import scale_and_clip_
from lit_prefopt.kernels.logprobs import sequence_logprobs
from lit_prefopt.metrics import PAIR_METRICS, pair_metrics
from lit_prefopt.models.checkpoint import HFCheckpoint, with_pad_token
from lit_prefopt.models.export import export_hf
from lit_prefopt.models.rotary_precision import keep_rotary_angles_exact
from lit_prefopt.optim import check_updates_survive, parameter_groups, plain_hyperparameters
from lit_prefopt.reference.source import LiveReference, ReferenceSource, choose_reference_source
from lit_prefopt.strategies import sharding_mesh

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


class PreferenceModule(LightningModule):
    """Trains `checkpoint`'s policy with `criterion`.

    Reference log-probs come from one `ReferenceSource` chosen in `setup`: scores in the data
    (`reference_from_data`), the reference cache, LoRA's base weights or a live frozen model,
    which the source owns outside the module tree (never in `state_dict`, a checkpoint, DDP's
    gradient buckets or the optimizer; rebuilt from its path on resume).
    """

    def __init__(
        self,
        checkpoint: HFCheckpoint,
        criterion: Criterion,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        reference_from_data: bool = False,
        max_consecutive_skips: int = 3,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.criterion = criterion
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.reference_from_data = reference_from_data
        self.config = config or {}
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self.tokens_seen = 0
        # Run totals of the data counters the batches carry (truncated, dropped, skipped pairs).
        self.data_counts: dict[str, int] = dict.fromkeys(DATA_COUNTERS, 0)
        self.last_validated_step = -1
        self.policy: PreTrainedModel | None = None
        # Where reference log-probs come from, chosen in `setup` (lit_prefopt.reference.source).
        self.reference_source: ReferenceSource | None = None
        self.val_metrics = nn.ModuleDict({_key(name): MeanMetric() for name in PAIR_METRICS})
        self._step_sums: dict[str, Tensor] = {}
        self._step_started = time.perf_counter()

    @property
    def reference(self) -> nn.Module | None:
        """The frozen reference model, when the reference source holds one (the live source)."""
        return self.reference_source.model if self.reference_source is not None else None

    def live_reference(self) -> LiveReference:
        """A fresh live reference for this module's models (the reference cache fills from one)."""
        return LiveReference(self.checkpoint, self.checkpoint.chunked_logprobs)

    def setup(self, stage: str) -> None:
        """Choose the reference source once, before `configure_model` loads anything."""
        if self.reference_source is None:
            self.reference_source = choose_reference_source(self, self.trainer)

    def configure_model(self) -> None:
        """Load the models once (Lightning calls this again for validate, then fit).

        Under `strategy=fsdp` or `hsdp` (Lightning's ModelParallelStrategy) both models are built
        on the meta device and sharded over the strategy's mesh as they load.
        """
        mesh = sharding_mesh(self.device_mesh) if self.device_mesh is not None else None
        device = self.trainer.strategy.root_device
        mp_policy = getattr(self.trainer.strategy, "mp_policy", None)
        if self.policy is None:
            self.policy = self.checkpoint.load_policy(mesh, device, mp_policy)
            keep_rotary_angles_exact(self.policy)
        if self.reference_source is not None:
            self.reference_source.configure(self)

    def pair_logps(self, batch: PreferenceBatch) -> PairLogps:
        """Policy log-probs with grad, and the reference source's log-probs, for the batch's pairs.

        The reference runs first, while nothing of the step is alive yet: after the policy's
        forward, its working memory would stack on everything the policy keeps for backward. In
        the benchmark's 128k DPO run that lowers the step's most live heap from 437 to 387 MiB
        and moves it from the reference's forward into the policy's backward.
        """
        ref_chosen, ref_rejected = self.reference_source.logps(batch) if self.reference_source else (None, None)
        sums, lengths = sequence_logprobs(self.policy, batch, self.checkpoint.chunked_logprobs)
        chosen, rejected = sums.chunk(2)
        chosen_lengths, rejected_lengths = lengths.chunk(2)
        return PairLogps(chosen, rejected, chosen_lengths, rejected_lengths, ref_chosen, ref_rejected,
                         weights=batch.pair_weights.float())

    def _pair_results(self, batch: PreferenceBatch) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Per-pair losses, pair weights and per-pair metric values of a batch."""
        logps = self.pair_logps(batch)
        output = self.criterion(logps)
        per_pair_loss = output.losses + self.criterion.nll_scale * logps.chosen_nll
        return per_pair_loss, batch.pair_weights.float(), pair_metrics(logps, output, per_pair_loss)

    def training_step(self, batch: PreferenceBatch, batch_idx: int) -> Tensor:
        """Return the weighted *sum* of pair losses; gradients are normalized per optimizer step.

        The step's objective is the mean over all its pairs, across micro-batches and ranks,
        whatever their sizes (token-budget batches vary, padding pairs weigh 0). That count is
        only known once every micro-batch has run, so `on_before_optimizer_step` rescales the
        accumulated gradients by it.
        """
        per_pair_loss, weights, values = self._pair_results(batch)
        self._accumulate(values, weights, batch)
        return (per_pair_loss * weights).sum()

    def _accumulate(self, values: dict[str, Tensor], weights: Tensor, batch: PreferenceBatch) -> None:
        """Sum weighted metric values over the micro-batches of one optimizer step."""
        sums = {name: (value.float() * weights).sum() for name, value in values.items()}
        row_weights = torch.cat([weights, weights])
        sums["_pairs"] = weights.sum()
        sums["_tokens"] = (batch.attention_mask.sum(dim=1).float() * row_weights).sum()
        sums["_positions"] = row_weights.sum() * batch.attention_mask.shape[1]
        for name in DATA_COUNTERS:  # every counter on every rank, absent ones as 0
            sums[f"_count/{name}"] = torch.tensor(float(batch.counts.get(name, 0)), device=weights.device)
        for name, value in sums.items():
            self._step_sums[name] = self._step_sums.get(name, 0.0) + value

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Normalize gradients to the step's pair mean, skip non-finite updates, log the step."""
        if not self._step_sums:
            return
        sums = self._reduced_step_sums()
        pairs = sums.pop("_pairs").clamp(min=1.0)
        tokens = sums.pop("_tokens")
        positions = sums.pop("_positions").clamp(min=1.0)
        for name in DATA_COUNTERS:
            self.data_counts[name] += int(sums.pop(f"_count/{name}").item())
        self.tokens_seen += int(tokens.item())
        # Lightning divided each micro-batch loss by accumulate_grad_batches and data parallelism
        # averaged over ranks; undo both and divide by the step's real pair count instead.
        scale = self.trainer.accumulate_grad_batches * self.trainer.world_size / pairs
        grads = [p.grad for p in self.policy.parameters() if p.grad is not None]
        grad_norm = scale_and_clip_(grads, scale, self._clip_norm)
        self._guard_finite(grad_norm, optimizer)

        now = time.perf_counter()
        values = {name: value / pairs for name, value in sums.items()}
        values["tokens_per_s"] = tokens / max(now - self._step_started, 1e-9)
        values["lr"] = optimizer.param_groups[0]["lr"]
        values["grad_norm"] = grad_norm
        values["skipped_steps"] = self.skipped_steps
        values["padding_ratio"] = 1.0 - tokens / positions
        values.update({f"data/{name}": count for name, count in self.data_counts.items()})
        self._log_step(values)
        self._step_sums = {}
        self._step_started = now

    def _log_step(self, values: dict[str, Tensor | float]) -> None:
        """Hand the step's `train/` metrics to the loggers now, before its checkpoint is saved.

        Lightning passes `self.log` values to loggers only after the batch's callbacks, that is
        after ModelCheckpoint: a run killed in between would lack the row of the last step its
        checkpoint holds, which the resumed run never logs again. `self.log` still feeds the
        progress bar and `callback_metrics` (what train() returns).
        """
        names = [f"train/{name}" for name in values]
        floats = dict(zip(names, torch.stack([torch.as_tensor(v, device=self.device).float() for v in values.values()]).tolist()))
        for name, value in floats.items():
            prog_bar = name.removeprefix("train/") in _PROGRESS_BAR
            self.log(name, value, on_step=True, on_epoch=False, logger=False, prog_bar=prog_bar)
        step = self.global_step
        if (step + 1) % self.trainer.log_every_n_steps == 0 or step + 1 == self.trainer.max_steps:
            for logger in self.loggers:
                logger.log_metrics(floats, step=step)

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer,
        optimizer_closure: Callable[[], Any] | None = None,
    ) -> None:
        """Step, then free the gradients at once.

        Lightning zeroes gradients only after the next step's forward, so a full set of gradients
        (one policy's worth of memory: 250 MiB for a 66M-parameter model with a 128k vocabulary)
        would sit idle through that forward, the peak of a step with the chunked head. Freed here,
        the next backward makes them afresh; Lightning's own zeroing then finds none.
        """
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        optimizer.zero_grad(set_to_none=True)

    def _reduced_step_sums(self) -> dict[str, Tensor]:
        """The step's sums over all ranks in one all-reduce. The names are the same fixed set on
        every rank (metrics of the criterion, totals, every declared data counter); sorting them
        makes the order independent of which micro-batch first produced each one."""
        names = sorted(self._step_sums)
        totals = torch.stack([torch.as_tensor(self._step_sums[n], device=self.device).float() for n in names])
        if self.trainer.world_size > 1:
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        return dict(zip(names, totals))

    def _guard_finite(self, grad_norm: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Drop a step whose gradients are not finite; stop after too many in a row.

        Dropping the gradients (not zeroing them) makes the optimizer leave every parameter and
        its moments untouched. Every rank sees the same reduced gradients, so all agree.
        """
        if torch.isfinite(grad_norm):
            self.consecutive_skips = 0
            return
        optimizer.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        self.consecutive_skips += 1
        log.warning("non-finite loss or gradient at step %d: update skipped", self.global_step)
        if self.consecutive_skips >= self.max_consecutive_skips:
            raise RuntimeError(
                f"{self.consecutive_skips} optimizer steps in a row had a non-finite loss or gradient "
                f"(limit max_consecutive_skips={self.max_consecutive_skips}); stopping. The last saved "
                "checkpoint is intact: lower optimizer.lr, check the data, or raise the limit."
            )

    def on_train_end(self) -> None:
        """A run shorter than max_consecutive_skips whose every step was skipped trained nothing: not a success."""
        steps = self.trainer.global_step
        if steps > 0 and self.skipped_steps >= steps:
            raise RuntimeError(
                f"all {steps} optimizer steps had a non-finite loss or gradient and were skipped: nothing was "
                "trained. Lower optimizer.lr, check the data and the criterion's hyperparameters."
            )

    def validation_step(self, batch: PreferenceBatch, batch_idx: int) -> None:
        _, weights, values = self._pair_results(batch)
        for name, value in values.items():
            metric = self.val_metrics[_key(name)]
            metric.update(value.detach().float(), weights)
            self.log(f"val/{name}", metric, on_step=False, on_epoch=True, prog_bar=name in _PROGRESS_BAR)

    def on_fit_start(self) -> None:
        """Fresh validation metric states for fit's validations, which run under no_grad.

        A `trainer.validate()` before `fit` (with Lightning's default `inference_mode=True`) leaves
        the states as inference tensors, which fit's validation could not update in place.
        """
        for metric in self.val_metrics.values():
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        """Remember the step of the latest validation, so train() need not repeat it at the end."""
        self.last_validated_step = self.global_step

    def configure_optimizers(self) -> dict[str, Any]:
        """Optimizer over the trainable policy parameters only (weight decay on matrices)."""
        optimizer = plain_hyperparameters(self.optimizer_factory(parameter_groups(self.trainer.model)))
        check_updates_survive(optimizer, self._weights_setting(), self._sum_over_ranks)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _weights_setting(self) -> str:
        """The config setting that decides the trainable weights' dtype, for error messages."""
        precision = self.trainer.precision
        if precision.endswith("-true") and precision != "32-true":
            return f"trainer.precision={precision}"
        return f"model.dtype={self.checkpoint.dtype}"

    def _sum_over_ranks(self, tensor: Tensor) -> Tensor:
        return self.trainer.strategy.reduce(tensor, reduce_op="sum") if self.trainer.world_size > 1 else tensor

    @property
    def _clip_norm(self) -> float | None:
        """`trainer.gradient_clip_val` when clipping by norm: this module clips (see
        `configure_gradient_clipping`)."""
        algorithm = self.trainer.gradient_clip_algorithm or GradClipAlgorithmType.NORM
        by_norm = GradClipAlgorithmType(algorithm) == GradClipAlgorithmType.NORM
        return self.trainer.gradient_clip_val if by_norm else None

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clipping by norm is done in `on_before_optimizer_step` with the norm computed there for
        logging, so the norm is taken once (under FSDP: one all-reduce, not one per gradient plus
        Lightning's own); clipping by value stays Lightning's."""
        if self._clip_norm is None:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the run's config as plain values so the file loads with weights_only=True."""
        checkpoint["config"] = self.config
        checkpoint["model_path"] = self.checkpoint.base_directory
        checkpoint["skipped_steps"] = self.skipped_steps
        checkpoint["tokens_seen"] = self.tokens_seen
        checkpoint["data_counts"] = dict(self.data_counts)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.skipped_steps = checkpoint.get("skipped_steps", 0)
        self.tokens_seen = checkpoint.get("tokens_seen", 0)
        self.data_counts = {**dict.fromkeys(DATA_COUNTERS, 0), **checkpoint.get("data_counts", {})}

    _tokenizer: PreTrainedTokenizerBase | None = None

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The policy's tokenizer: the one given, else loaded from the model source on first use
        (`PreferenceDataModule` takes it from here when it has none)."""
        if self._tokenizer is None:
            self._tokenizer = self.checkpoint.load_tokenizer()
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: PreTrainedTokenizerBase | None) -> None:
        self._tokenizer = with_pad_token(tokenizer) if tokenizer is not None else None

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the policy and its tokenizer as a `transformers` checkpoint directory.

        Under FSDP every rank must call it (the shards are gathered; rank 0 writes). LoRA
        adapters are merged into the policy in place, so call it once training is done.
        """
        if self.policy is None:
            raise RuntimeError("no policy yet: save_pretrained works once the trainer has set the module up")
        is_global_zero = self._trainer is None or self.trainer.is_global_zero
        export_hf(self, self.tokenizer, Path(directory), is_global_zero)


_PROGRESS_BAR = {"loss", "rewards/margin", "rewards/accuracy", "tokens_per_s"}


def _key(name: str) -> str:
    return name.replace("/", "__")
