"""The `hf/` export: the trained policy as a Hugging Face checkpoint directory, streamed to disk.

Rank 0 never holds the model twice. Safetensors files start with a header of every tensor's
name, dtype, shape and byte offsets, all known from the shapes, so the header is written first
and then each tensor in turn is gathered (a collective under FSDP, in the export dtype), written
to its place and dropped. Rank 0's memory grows by about one tensor, never by a full state dict
plus a second, randomly initialised model to load it into.

The export dtype is the source checkpoint's (bf16 in, bf16 out), whatever dtype training kept its
weights in; `export_dtype` overrides it.
"""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from lit_prefopt.models.checkpoint import DTYPES
from lit_prefopt.models.lora import has_adapters, merge_adapters
from lit_prefopt.outputs.file_modes import apply_umask

# Largest safetensors file written; bigger models get numbered files and an index, as
# save_pretrained writes them.
MAX_SHARD_BYTES = 5 * 2**30
SAFETENSORS_DTYPES = {
    torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}
TORCH_DTYPES = {name: dtype for dtype, name in SAFETENSORS_DTYPES.items()}


def check_export_dtype(export_dtype: str | None) -> None:
    """Fail before training, not after it, on a bad `export_dtype`."""
    if export_dtype is not None and export_dtype not in DTYPES:
        raise ValueError(f"export_dtype must be null (the source checkpoint's dtype) or one of {sorted(DTYPES)}, "
                         f"got {export_dtype!r}")


def export_hf(module: Any, tokenizer: Any, target: Path, is_global_zero: bool, export_dtype: str | None = None) -> None:
    """The final policy and tokenizer in `save_pretrained` format, loadable by transformers.

    Every rank takes part (under FSDP each tensor is gathered in turn); rank 0 writes.
    """
    check_export_dtype(export_dtype)
    policy = module.policy
    if has_adapters(policy):
        policy = merge_adapters(policy)
    dtype = DTYPES[export_dtype] if export_dtype else source_dtype(Path(module.checkpoint.base_directory))
    save_policy(policy, target, dtype, is_global_zero)
    if is_global_zero:
        tokenizer.save_pretrained(target)
        apply_umask(target)


def save_policy(model: nn.Module, target: Path, dtype: torch.dtype, is_global_zero: bool) -> None:
    """`model`'s weights (floating ones in `dtype`) and config into `target` (collective under FSDP)."""
    tensors = _saved_tensors(model)
    sharded = any(isinstance(t, DTensor) for t in tensors.values())
    if not is_global_zero and not sharded:
        return
    files = _plan_files({name: (tuple(t.shape), _export_dtype(t, dtype)) for name, t in tensors.items()})
    if is_global_zero:
        target.mkdir(parents=True, exist_ok=True)
        for stale in [*target.glob("*.safetensors"), target / "model.safetensors.index.json"]:
            stale.unlink(missing_ok=True)
    for file_name, names in files.items():
        _write_file(target / file_name, {name: tensors[name] for name in names}, dtype, is_global_zero)
    if not is_global_zero:
        return
    if len(files) > 1:
        total = sum(_nbytes(tuple(t.shape), _export_dtype(t, dtype)) for t in tensors.values())
        weight_map = {name: file_name for file_name, names in files.items() for name in names}
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (target / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    config = copy.deepcopy(model.config)
    config.dtype = dtype
    config.use_cache = True  # training turned the KV cache off; generation wants it
    config.save_pretrained(target)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(target)


def source_dtype(directory: Path) -> torch.dtype:
    """The dtype of a checkpoint's stored weights (its first floating safetensors tensor)."""
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(path, framework="pt") as handle:
            for name in handle.keys():
                dtype = TORCH_DTYPES.get(handle.get_slice(name).get_dtype())
                if dtype is not None and dtype.is_floating_point:
                    return dtype
    raise ValueError(f"{directory} has no safetensors weights to take the export dtype from: set export_dtype")


def _saved_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The state dict without aliases: a tied LM head is saved once, under its first name (the
    embedding), as save_pretrained does; transformers ties it again on load."""
    state = model.state_dict()
    owned = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
    return {name: tensor for name, tensor in state.items() if name in owned}


def _export_dtype(tensor: Tensor, dtype: torch.dtype) -> torch.dtype:
    return dtype if tensor.dtype.is_floating_point else tensor.dtype


def _nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    return torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()


def _plan_files(entries: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> dict[str, list[str]]:
    """Split tensors, in order, into files of at most MAX_SHARD_BYTES (a bigger tensor gets its own)."""
    groups: list[list[str]] = [[]]
    size = 0
    for name, (shape, dtype) in entries.items():
        nbytes = _nbytes(shape, dtype)
        if groups[-1] and size + nbytes > MAX_SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    if len(groups) == 1:
        return {"model.safetensors": groups[0]}
    return {f"model-{i:05d}-of-{len(groups):05d}.safetensors": names for i, names in enumerate(groups, start=1)}


def _write_file(path: Path, tensors: dict[str, Tensor], dtype: torch.dtype, is_global_zero: bool) -> None:
    """One safetensors file: the header from the shapes, then each tensor's bytes as it is gathered."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, tensor in tensors.items():
        out_dtype = _export_dtype(tensor, dtype)
        nbytes = _nbytes(tuple(tensor.shape), out_dtype)
        header[name] = {"dtype": SAFETENSORS_DTYPES[out_dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data section starts 8-byte aligned
    stream = open(path, "wb") if is_global_zero else None
    try:
        if stream is not None:
            stream.write(struct.pack("<Q", len(encoded)))
            stream.write(encoded)
        for full in _gathered(tensors, dtype):
            if stream is not None:
                stream.write(full.reshape(-1).view(torch.uint8).numpy().data)
    finally:
        if stream is not None:
            stream.close()


def _gathered(tensors: dict[str, Tensor], dtype: torch.dtype) -> Iterator[Tensor]:
    """Each tensor whole, in its export dtype, contiguous on the CPU, one at a time (cast before
    the gather, so the all-gather moves export-dtype bytes)."""
    for tensor in tensors.values():
        tensor = tensor.detach().to(_export_dtype(tensor, dtype))
        if isinstance(tensor, DTensor):
            tensor = tensor.full_tensor()
        yield tensor.to("cpu").contiguous()
