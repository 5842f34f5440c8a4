"""Each rank reads only the slices of a safetensors checkpoint that its shards hold.

Reading the whole checkpoint on rank 0 and broadcasting every full tensor costs rank 0's host the
full checkpoint in memory (140 GB at 70B) and sends every byte to every rank. The distributed
checkpoint reader for Hugging Face files instead plans, per rank, the slices of each tensor that
its DTensor shards cover and reads just those, converting to the model's dtype as it copies.
Nothing is communicated but the plan. The slices are read with ordinary file reads rather than
through a memory map: mapped pages of the file would count as the process's resident memory
until the file is closed, doubling a rank's footprint while it loads.

Tied weights (Llama-3.2, Qwen2: the LM head is the embedding matrix) appear in the model's state
dict under both names but in the files under one; a name the files lack is fine exactly when it
shares its parameter with a name they have. Any other missing name is an error naming it.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import HuggingFaceStorageReader
from torch.distributed.checkpoint.planner import LoadPlan, LoadPlanner, ReadItem
from torch.distributed.checkpoint.state_dict import get_model_state_dict
from torch.futures import Future

# safetensors dtype names (the format's own spelling).
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


def read_owned_slices(model: nn.Module, directory: str | Path) -> None:
    """Fill a sharded model's local shards from `directory`'s safetensors files (collective)."""
    reader = SliceReader(str(directory))
    stored = reader.read_metadata().state_dict_metadata
    state = get_model_state_dict(model)
    missing = [name for name in state if name not in stored]
    untied = [name for name in missing if not _shares_a_stored_tensor(model, name, stored)]
    if untied:
        raise ValueError(f"{directory} lacks weights the model needs: {', '.join(untied[:5])}")
    dcp.load({name: tensor for name, tensor in state.items() if name in stored}, storage_reader=reader)


def _shares_a_stored_tensor(model: nn.Module, name: str, stored: dict) -> bool:
    """Whether parameter `name` is the same tensor as a parameter stored under another name."""
    names_by_tensor: dict[int, list[str]] = {}
    for other, parameter in model.named_parameters(remove_duplicate=False):
        names_by_tensor.setdefault(id(parameter), []).append(other)
    return any(name in names and any(n in stored for n in names) for names in names_by_tensor.values())


class SliceReader(HuggingFaceStorageReader):
    """The Hugging Face storage reader, reading each requested slice with a file read, no mmap."""

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        per_file: dict[str, list[ReadItem]] = {}
        for item in plan.items:
            per_file.setdefault(self.storage_data[item.storage_index].relative_path, []).append(item)
        for file_name, items in per_file.items():
            header, data_start = safetensors_header(file_name)
            with open(file_name, "rb", buffering=0) as file:
                for item in items:
                    target = planner.resolve_tensor(item).detach()
                    target.copy_(_read_slice(file, header[item.storage_index.fqn], data_start, item))
                    planner.commit_tensor(item, target)
        done: Future[None] = Future()
        done.set_result(None)
        return done


def safetensors_header(path: str) -> tuple[dict, int]:
    """The JSON header of a safetensors file (name -> dtype, shape, data_offsets) and where data starts."""
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        return json.loads(file.read(length)), 8 + length


def _read_slice(file, entry: dict, data_start: int, item: ReadItem) -> torch.Tensor:
    """Rows [offset, offset + length) of dimension 0 in one read, then the other dimensions narrowed."""
    dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
    if dtype is None:
        raise ValueError(f"{file.name}: tensor dtype {entry['dtype']} is not supported for sharded loading")
    shape = entry["shape"]
    if not shape:
        first, rows, row_shape = 0, 1, []
    else:
        first, rows, row_shape = item.storage_offsets[0], item.lengths[0], shape[1:]
    row_bytes = math.prod(row_shape) * dtype.itemsize
    buffer = bytearray(rows * row_bytes)
    file.seek(data_start + entry["data_offsets"][0] + first * row_bytes)
    if file.readinto(buffer) != len(buffer):
        raise ValueError(f"{file.name} is truncated")
    tensor = torch.frombuffer(buffer, dtype=dtype) if buffer else torch.empty(0, dtype=dtype)
    tensor = tensor.reshape([rows, *row_shape] if shape else [])
    for dim in range(1, len(shape)):
        tensor = tensor.narrow(dim, item.storage_offsets[dim], item.lengths[dim])
    return tensor
