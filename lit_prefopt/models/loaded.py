"""Models handed over from Python as loaded `transformers` objects, in `HFCheckpoint`'s role.

The Python API (`DPOModule(model=..., reference_model=...)`) accepts a loaded model where the
config takes a directory. The training module asks its model source for the policy and the
reference in `configure_model`, whatever their origin; this class answers with the objects it
was given (or loads the side given as a directory). A reference left out is a frozen copy of the
policy taken then, before any step changes it, and after a resume it is again the policy as
given (Lightning restores the trained weights after `configure_model`).

An object has no directory a checkpoint can point back to: `base_directory` is the directory the
policy was loaded from (`name_or_path`) when there is one, else None, and a checkpoint file of
such a run cannot start another run by path (`run_checkpoint.py` says so). Loaded models are not
sharded: FSDP needs directories.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch.distributed.device_mesh import DeviceMesh
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lit_prefopt.models.checkpoint import DEFAULT_CHUNKED_LOGPROBS, HFCheckpoint, require_chunk_size, with_pad_token

ModelInput = str | os.PathLike | PreTrainedModel


class LoadedModels:
    """A policy and a reference of which at least one is a loaded model object."""

    uses_lora = False

    def __init__(
        self,
        policy: ModelInput,
        reference: ModelInput | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        chunked_logprobs: int = DEFAULT_CHUNKED_LOGPROBS,
    ) -> None:
        self.policy = policy if isinstance(policy, torch.nn.Module) else None
        self.reference = reference if isinstance(reference, torch.nn.Module) else None
        self.policy_path = None if self.policy is not None else str(policy)
        if self.reference is not None:
            self.reference_path: str | None = None
        else:  # a directory, or (None) the policy's: its directory, or a copy of the object
            self.reference_path = str(reference) if reference is not None else self.policy_path
        self.tokenizer = tokenizer
        self.chunked_logprobs = require_chunk_size(chunked_logprobs)
        self.dtype = str((self.policy if self.policy is not None else self.reference).dtype).removeprefix("torch.")

    @property
    def base_directory(self) -> str | None:
        """The directory the policy came from, or None for a model built in memory."""
        if self.policy_path is not None:
            return self.policy_path
        source = getattr(self.policy, "name_or_path", "")
        return source if source and (Path(source) / "config.json").is_file() else None

    @property
    def reference_given(self) -> bool:
        """Whether the reference is an object (given, or copied from a given policy) rather than a directory."""
        return self.reference_path is None

    def prepare(self) -> None:
        """Nothing to build: the objects exist, and a directory side is checked when it loads."""

    def load_tokenizer(self) -> PreTrainedTokenizerBase:
        if self.tokenizer is not None:
            return with_pad_token(self.tokenizer)
        if self.base_directory is None:
            raise ValueError(
                "the policy was given as a model built in memory, so there is no directory to load its tokenizer "
                "from: pass tokenizer= to the module (or to PreferenceDataModule)"
            )
        return with_pad_token(AutoTokenizer.from_pretrained(self.base_directory))

    def load_policy(
        self, mesh: DeviceMesh | None = None, device: torch.device | None = None, mp_policy: object | None = None,
    ) -> PreTrainedModel:
        """The given policy, or the one at its directory (`HFCheckpoint`'s signature; never sharded)."""
        _refuse_sharding(mesh)
        if self.policy is None:
            return self._checkpoint(self.policy_path).load_policy(None, device)
        self.policy.config.use_cache = False
        return self.policy.train()

    def reference_dtype(self, precision: str) -> str:
        """The dtype of the models as given: objects keep their own, a directory side loads in it."""
        return self.dtype

    def load_reference(
        self, mesh: DeviceMesh | None = None, device: torch.device | None = None,
        mp_policy: object | None = None, dtype: str | None = None, policy: PreTrainedModel | None = None,
    ) -> PreTrainedModel:
        """The given reference, the one at `reference_path` (in `dtype`), or a copy of the policy as given
        (`self.policy`, not the `policy` argument, which may have been trained by then)."""
        _refuse_sharding(mesh)
        if self.reference_path is not None:
            return self._checkpoint(self.reference_path).load_reference(None, device, dtype=dtype)
        model = self.reference if self.reference is not None else copy.deepcopy(self.policy)
        model.requires_grad_(False)
        return model.eval()

    def _checkpoint(self, directory: str) -> HFCheckpoint:
        return HFCheckpoint(path=directory, dtype=self.dtype, chunked_logprobs=self.chunked_logprobs)


def _refuse_sharding(mesh: DeviceMesh | None) -> None:
    if mesh is not None:
        raise ValueError("a model given as a loaded object cannot be sharded (FSDP): give its checkpoint directory")
