"""Reference log-probs: one source per run, chosen once, that every step asks.

A criterion that needs a reference (DPO and kin) needs the frozen model's summed log-probs of
each chosen and rejected completion. They can come from four places, tried in this order:

1. scores in the data (`reference_chosen`/`reference_rejected` in the records): the user already
   paid for them, so nothing is loaded and nothing is computed;
2. the reference cache (`reference_cache=true`): one earlier pass stored them per pair; reading
   a file is cheaper than any forward pass, and no reference model is held during training;
3. LoRA's base weights: the policy with its adapters switched off *is* the starting model, so a
   second copy in memory would only cost memory;
4. a live model: the frozen reference loaded beside the policy, one no-grad forward per step.
   It is the only source that can score any text and the only one TR-DPO can move.

The choice is made once, in the module's `setup`, before any model loads, so the module never
loads a model it will not use. The live source owns its frozen model as a plain attribute of a
plain object: `nn.Module` does not register it, so it stays out of the optimizer, the
checkpoint's `state_dict`, DDP's gradient buckets and `named_parameters`; it is rebuilt from its
path on resume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.kernels.logprobs import sequence_logprobs
from lit_prefopt.models.lora import base_model_mode
from lit_prefopt.models.rotary_precision import keep_rotary_angles_exact
from lit_prefopt.reference.pair_keys import pair_keys
from lit_prefopt.strategies import sharding_mesh

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule, Trainer

PairScores = tuple[Tensor, Tensor]


class ReferenceSource:
    """Answers `logps(batch)`: the reference's summed (chosen, rejected) log-probs per pair, fp32."""

    # The frozen model the source owns, if any (only the live source has one).
    model: nn.Module | None = None
    # Whether any text can be scored, not only the training and validation pairs.
    scores_any_batch = False

    def configure(self, module: LightningModule) -> None:
        """Load what the source needs, once the module's policy exists (`configure_model`)."""

    def logps(self, batch: PreferenceBatch) -> PairScores:
        raise NotImplementedError


class ScoresInData(ReferenceSource):
    """The scores the records carry (the data scan found them in every record)."""

    def logps(self, batch: PreferenceBatch) -> PairScores:
        if batch.reference_chosen is None or batch.reference_rejected is None:
            raise RuntimeError("the data scan found reference scores in the records, but this batch has none")
        return batch.reference_chosen.float(), batch.reference_rejected.float()


class CachedScores(ReferenceSource):
    """Scores stored by an earlier reference pass, found by each pair's token digest.

    A pair missing from the entry is an error, never a silent live fallback: it would mean the
    entry's key did not capture something that changed the tokens.
    """

    def __init__(self, scores: dict[str, tuple[float, float]], entry: object) -> None:
        self.scores = scores
        self.entry = entry

    def logps(self, batch: PreferenceBatch) -> PairScores:
        keys, weights = pair_keys(batch), batch.pair_weights.tolist()
        missing = [i for i, (k, w) in enumerate(zip(keys, weights)) if w > 0 and k not in self.scores]
        if missing:
            raise KeyError(f"{len(missing)} pairs of this batch are not in the reference cache {self.entry}")
        values = torch.tensor([self.scores.get(k, (0.0, 0.0)) for k in keys], device=batch.pair_weights.device)
        return values[:, 0], values[:, 1]


class LoRABaseWeights(ReferenceSource):
    """The policy with its LoRA adapters disabled: the starting model, without a second copy."""

    scores_any_batch = True

    def __init__(self, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self.policy: nn.Module | None = None

    def configure(self, module: LightningModule) -> None:
        self.policy = module.policy

    @torch.no_grad()
    def logps(self, batch: PreferenceBatch) -> PairScores:
        with base_model_mode(self.policy) as base:
            sums, _ = sequence_logprobs(base, batch, self.chunk_size)
        return sums.chunk(2)


class LiveReference(ReferenceSource):
    """The frozen reference model: eval mode, no grad, in `model.reference_dtype` (by default the
    policy's compute dtype), sharded like the policy under FSDP.

    `models` is the module's model source (`HFCheckpoint` or `LoadedModels`); `model` may be given
    directly (an already loaded reference).
    """

    scores_any_batch = True

    def __init__(self, models: object | None, chunk_size: int, model: nn.Module | None = None) -> None:
        self.models = models
        self.chunk_size = chunk_size
        self.model = model

    @property
    def directory(self) -> str | None:
        """The directory the reference loads from (None for a model given as an object)."""
        return getattr(self.models, "reference_path", None)

    def dtype(self, precision: str) -> str:
        return self.models.reference_dtype(precision)

    def configure(self, module: LightningModule) -> None:
        """Load the model once (Lightning calls `configure_model` for validate, then fit)."""
        if self.model is None:
            trainer = module.trainer
            mesh = sharding_mesh(module.device_mesh) if module.device_mesh is not None else None
            mp_policy = getattr(trainer.strategy, "mp_policy", None)
            dtype = self.dtype(trainer.precision)
            # The policy, when already loaded, may serve a reference of the same checkpoint (no second read).
            self.model = self.models.load_reference(mesh, trainer.strategy.root_device, mp_policy, dtype, module.policy)
        keep_rotary_angles_exact(self.model)

    @torch.no_grad()
    def logps(self, batch: PreferenceBatch) -> PairScores:
        self._move_to(batch.input_ids.device)
        sums, _ = sequence_logprobs(self.model, batch, self.chunk_size)
        if hasattr(self.model, "reshard"):
            # FSDP2 keeps the root's parameters gathered after a forward that has no backward;
            # free them now rather than holding a full copy all step.
            self.model.reshard()
        return sums.chunk(2)

    @torch.no_grad()
    def move_toward(self, policy: nn.Module, mix: float) -> None:
        """reference <- mix * policy + (1 - mix) * reference, shard by shard (TR-DPO's sync).

        Policy and reference are sharded alike under FSDP and identical on every rank under DDP,
        so each rank updates its own parameters and all stay in agreement without communication.
        """
        for reference, trained in zip(self.model.parameters(), policy.parameters(), strict=True):
            _local(reference).lerp_(_local(trained).to(reference.dtype), mix)

    def _move_to(self, device: torch.device) -> None:
        first = next(self.model.parameters())
        if first.device != device:
            # Normal tensors even when the first use is a validation under inference mode, so
            # TR-DPO can update them in place later, in training.
            with torch.inference_mode(False):
                self.model.to(device)


@runtime_checkable
class ReferenceScoreProvider(Protocol):
    """A callback that can stand in for the live reference with stored scores (the reference cache)."""

    enabled: bool

    def provide_scores(self, trainer: Trainer, module: LightningModule) -> CachedScores: ...


def choose_reference_source(module: LightningModule, trainer: Trainer) -> ReferenceSource | None:
    """The first source that can answer, in the order this file's docstring explains; None when the
    criterion needs no reference."""
    if not module.criterion.needs_reference:
        return None
    if module.reference_from_data:
        return ScoresInData()
    for callback in trainer.callbacks:
        if isinstance(callback, ReferenceScoreProvider) and callback.enabled:
            return callback.provide_scores(trainer, module)
    chunk_size = module.checkpoint.chunked_logprobs
    if module.checkpoint.uses_lora:
        return LoRABaseWeights(chunk_size)
    return LiveReference(module.checkpoint, chunk_size)


def _local(tensor: Tensor) -> Tensor:
    """This rank's shard of a DTensor (policy and reference are sharded alike), else the tensor."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor.detach()
