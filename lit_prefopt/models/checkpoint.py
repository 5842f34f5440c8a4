"""Loading a Hugging Face causal-LM checkpoint directory: policy, reference and tokenizer.

`model=llama` (and its siblings) instantiate `HFCheckpoint`; the training module asks it for
the policy and, only when its criterion needs one, the reference. Loading is local only
(safetensors, no hub, no remote code unless the user sets `model.trust_remote_code`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lit_prefopt.kernels.attention.backends import check_implementation
from lit_prefopt.models.activation_checkpointing import enable_activation_checkpointing
from lit_prefopt.models.lora import merge_adapters, with_lora_adapters
from lit_prefopt.models.run_checkpoint import is_run_checkpoint, read_run_checkpoint
from lit_prefopt.models.sharding import load_sharded
from lit_prefopt.precision import compute_dtype

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Tokens per chunk of the LM-head log-probs (`model.chunked_logprobs`; 0 is the full-logits path).
DEFAULT_CHUNKED_LOGPROBS = 256
# `model.lora` when not set: rank 0 (off); the other values apply once `r` is set.
DEFAULT_LORA = {"r": 0, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}


class HFCheckpoint:
    """A checkpoint directory on disk plus how to load it.

    `path` is the policy's starting point, `reference_path` the frozen reference (default: the
    same directory, e.g. the SFT model). Either may also be an earlier lit_prefopt run's `hf/`
    export or one of its `.ckpt` files.

    `attn_implementation` is transformers' name (`sdpa`, `eager`, `flex_attention`,
    `flash_attention_2`) or `varlen`; it also chooses how shared-prompt rows attend
    (lit_prefopt.kernels.attention.backends).

    With `lora.r > 0` only LoRA adapters train (peft), and the reference is the same model with
    its adapters disabled, so no second copy is held in memory.
    """

    def __init__(
        self,
        path: str | None = None,
        reference_path: str | None = None,
        dtype: str = "float32",
        reference_dtype: str | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str = "sdpa",
        gradient_checkpointing: bool = True,
        compile: bool = False,
        chunked_logprobs: int = DEFAULT_CHUNKED_LOGPROBS,
        lora: dict | None = None,
    ) -> None:
        if not path:
            raise ValueError("model.path is required: a Hugging Face checkpoint directory on disk")
        if dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if reference_dtype is not None and reference_dtype not in DTYPES:
            raise ValueError(f"model.reference_dtype must be null or one of {sorted(DTYPES)}, got {reference_dtype!r}")
        self.path = str(path)
        self.reference_path = str(reference_path) if reference_path else self.path
        self.dtype = dtype
        self._reference_dtype = reference_dtype
        self.trust_remote_code = trust_remote_code
        check_implementation(attn_implementation)
        self.attn_implementation = attn_implementation
        self.gradient_checkpointing = gradient_checkpointing
        self.compile = compile
        self.chunked_logprobs = require_chunk_size(chunked_logprobs)
        self.lora = {**DEFAULT_LORA, **(lora or {})}
        if self.uses_lora and reference_path and str(reference_path) != self.path:
            raise ValueError(
                "model.reference_path must be unset with model.lora.r > 0: the reference is the policy "
                "with its adapters disabled"
            )

    @property
    def uses_lora(self) -> bool:
        return int(self.lora.get("r", 0)) > 0

    @property
    def base_directory(self) -> str:
        """The Hugging Face directory behind `path` (a run checkpoint's own base model)."""
        return read_run_checkpoint(self.path)[0] if is_run_checkpoint(self.path) else self.path

    def prepare(self) -> None:
        """Make sure the checkpoint exists on disk; a real checkpoint must already be there."""
        for key, directory in (("model.path", self.path), ("model.reference_path", self.reference_path)):
            if is_run_checkpoint(directory):
                continue
            if not (Path(directory) / "config.json").is_file():
                raise FileNotFoundError(
                    f"{key}={directory!r} is not a Hugging Face checkpoint directory (no config.json there)"
                )

    def load_tokenizer(self) -> PreTrainedTokenizerBase:
        tokenizer = AutoTokenizer.from_pretrained(self.base_directory, trust_remote_code=self.trust_remote_code)
        return with_pad_token(tokenizer)

    def reference_dtype(self, precision: str) -> str:
        """`model.reference_dtype`, by default the policy's compute dtype under `trainer.precision`
        (bfloat16 under bf16-mixed: see lit_prefopt.precision.compute_dtype)."""
        return self._reference_dtype or compute_dtype(precision, self.dtype)

    def load_policy(
        self, mesh: DeviceMesh | None = None, device: torch.device | None = None,
        mp_policy: MixedPrecisionPolicy | None = None,
    ) -> PreTrainedModel:
        """The trainable policy; sharded over `mesh` (FSDP2, computing as `mp_policy` says) when one is given."""
        model = self._load(self.path, mesh, device, self.dtype, mp_policy)
        if self.gradient_checkpointing:
            enable_activation_checkpointing(model, keep_attention=not self.compile)
        if self.compile:
            # Per decoder layer, in place: parameter names, checkpoints and FSDP's per-layer
            # sharding are untouched, and every layer shares one compiled graph.
            for layer in model.get_decoder().layers:
                layer.compile(dynamic=True)
        model.config.use_cache = False
        model.train()  # from_pretrained returns eval mode; the policy trains with its dropout
        if self.uses_lora:
            if mesh is not None:
                raise ValueError("model.lora with strategy=fsdp is not supported; use strategy=ddp or auto")
            model = with_lora_adapters(model, self.lora)
        return model

    def load_reference(
        self, mesh: DeviceMesh | None = None, device: torch.device | None = None,
        mp_policy: MixedPrecisionPolicy | None = None, dtype: str | None = None,
        policy: PreTrainedModel | None = None,
    ) -> PreTrainedModel:
        """The frozen reference in `dtype` (default `model.dtype`): eval mode (dropout off), no grad,
        never optimized or saved.

        Under FSDP it is sharded like the policy, so it costs each rank only its shard. When it is
        the policy's own checkpoint and `policy` (just loaded, not yet trained) holds its values
        exactly, its shards are copied from the policy's rather than read from the files again.
        """
        dtype = dtype or self.dtype
        if mesh is not None and policy is not None and self._reuses_policy_read(dtype):
            model = load_sharded(
                self.path, mesh, device or torch.device("cpu"), DTYPES[dtype], self.attn_implementation,
                self.trust_remote_code, mp_policy, like=policy,
            )
        else:
            model = self._load(self.reference_path, mesh, device, dtype, mp_policy)
        model.requires_grad_(False)
        model.eval()
        return model

    def _reuses_policy_read(self, dtype: str) -> bool:
        """Same safetensors directory, no adapters, and a policy dtype that holds the reference's exactly."""
        same = self.reference_path == self.path and not is_run_checkpoint(self.path) and not self.uses_lora
        return same and self.dtype in (dtype, "float32")

    def _load(
        self, directory: str, mesh: DeviceMesh | None, device: torch.device | None, dtype: str,
        mp_policy: MixedPrecisionPolicy | None = None,
    ) -> PreTrainedModel:
        if is_run_checkpoint(directory):
            return self._load_run_checkpoint(directory, mesh, device, dtype)
        if mesh is not None:
            return load_sharded(
                directory, mesh, device or torch.device("cpu"), DTYPES[dtype],
                self.attn_implementation, self.trust_remote_code, mp_policy,
            )
        return AutoModelForCausalLM.from_pretrained(
            directory,
            dtype=DTYPES[dtype],
            trust_remote_code=self.trust_remote_code,
            attn_implementation=self.attn_implementation,
            use_safetensors=None,
            local_files_only=True,
        )

    def _load_run_checkpoint(
        self, path: str, mesh: DeviceMesh | None, device: torch.device | None, dtype: str
    ) -> PreTrainedModel:
        """The base architecture with an earlier run's trained policy weights (LoRA adapters merged)."""
        base, weights, lora = read_run_checkpoint(path)
        if mesh is not None:
            raise ValueError(f"{path}: start FSDP runs from an earlier run's hf/ export, not a .ckpt file")
        model = self._load(base, None, device, dtype)
        if lora is not None:
            adapted = with_lora_adapters(model, lora)
            adapted.load_state_dict(weights)
            return merge_adapters(adapted)
        model.load_state_dict(weights)
        return model


def require_chunk_size(chunked_logprobs: int) -> int:
    if chunked_logprobs < 0:
        raise ValueError(f"model.chunked_logprobs must be >= 0 (0 is off), got {chunked_logprobs}")
    return int(chunked_logprobs)


def with_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """`tokenizer`, given EOS as its pad token when it has none.

    Padding positions are masked out everywhere, so any id works; EOS is the convention.
    """
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
