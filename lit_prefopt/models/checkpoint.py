"""Loading a Hugging Face causal-LM checkpoint directory: policy, reference and tokenizer.

`model=llama` (and its siblings) instantiate `HFCheckpoint`; the training module asks it for
the policy and, only when its criterion needs one, the reference. Loading is local only
(safetensors, no hub, no remote code unless the user sets `model.trust_remote_code`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.distributed.device_mesh import DeviceMesh
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lit_prefopt.models.sharding import load_sharded

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class HFCheckpoint:
    """A checkpoint directory on disk plus how to load it.

    `path` is the policy's starting point, `reference_path` the frozen reference (default: the
    same directory, e.g. the SFT model). Either may also be an earlier lit_prefopt run's `hf/`.
    """

    def __init__(
        self,
        path: str | None = None,
        reference_path: str | None = None,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        attn_implementation: str = "sdpa",
        gradient_checkpointing: bool = False,
    ) -> None:
        if not path:
            raise ValueError("model.path is required: a Hugging Face checkpoint directory on disk")
        if dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.path = str(path)
        self.reference_path = str(reference_path) if reference_path else self.path
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.attn_implementation = attn_implementation
        self.gradient_checkpointing = gradient_checkpointing

    def prepare(self) -> None:
        """Make sure the checkpoint exists on disk; a real checkpoint must already be there."""
        for key, directory in (("model.path", self.path), ("model.reference_path", self.reference_path)):
            if not (Path(directory) / "config.json").is_file():
                raise FileNotFoundError(
                    f"{key}={directory!r} is not a Hugging Face checkpoint directory (no config.json there)"
                )

    def load_tokenizer(self) -> PreTrainedTokenizerBase:
        tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=self.trust_remote_code)
        if tokenizer.pad_token_id is None:
            # Padding positions are masked out everywhere; any id works, EOS is the convention.
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def load_policy(self, mesh: DeviceMesh | None = None, device: torch.device | None = None) -> PreTrainedModel:
        """The trainable policy; sharded over `mesh` (FSDP2) when one is given."""
        model = self._load(self.path, mesh, device)
        if self.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        return model

    def load_reference(self, mesh: DeviceMesh | None = None, device: torch.device | None = None) -> PreTrainedModel:
        """The frozen reference: eval mode (dropout off), no grad, never optimized or saved.

        Under FSDP it is sharded like the policy, so it costs each rank only its shard.
        """
        model = self._load(self.reference_path, mesh, device)
        model.requires_grad_(False)
        model.eval()
        return model

    def _load(self, directory: str, mesh: DeviceMesh | None, device: torch.device | None) -> PreTrainedModel:
        if mesh is not None:
            return load_sharded(
                directory, mesh, device or torch.device("cpu"), DTYPES[self.dtype],
                self.attn_implementation, self.trust_remote_code,
            )
        return AutoModelForCausalLM.from_pretrained(
            directory,
            dtype=DTYPES[self.dtype],
            trust_remote_code=self.trust_remote_code,
            attn_implementation=self.attn_implementation,
            use_safetensors=None,
            local_files_only=True,
        )
