"""Which checkpoint `ckpt_path` means, and reading what a checkpoint says about its run.

`ckpt_path=last` is the checkpoint the run's `checkpoints/last.ckpt` points at (lit_prefopt.
checkpointing.last); when that cannot be read (a disk filled up or a copy was cut short) the newest
readable `step=N.ckpt` is used instead, and the log says so.
A checkpoint given by path that cannot be read is an error naming the file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lit_prefopt.checkpointing.last import LAST_NAME, last_target

log = logging.getLogger(__name__)

STEP_FILE = re.compile(r"step=(\d+)\.ckpt")
# A sharded (FSDP) checkpoint is a directory; its non-tensor state (step, config) is this file.
SHARDED_METADATA = "meta.pt"


@dataclass(frozen=True)
class CheckpointInfo:
    """What train() needs from a checkpoint before the model loads."""

    path: Path
    step: int
    config: dict[str, Any]


class UnreadableCheckpoint(ValueError):
    """A checkpoint file that torch cannot open (truncated, corrupt, not a checkpoint)."""


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """The checkpoint to resume from: `last` means this run's newest readable checkpoint (missing
    means a fresh start, with a warning); any other value is a path that must exist."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        found = _newest_readable(run_dir / "checkpoints")
        if found is None:
            log.warning("ckpt_path=last but %s holds no checkpoint: starting a fresh run", run_dir / "checkpoints")
        return None if found is None else str(found)
    path = Path(ckpt_path)
    if not path.exists():
        previous = path.with_name(path.name + ".old")
        if not previous.exists():
            raise FileNotFoundError(f"ckpt_path={ckpt_path!r} does not exist")
        log.warning("%s is missing; resuming from the previous save %s", path, previous)
        path = previous
    read_checkpoint(path)  # a corrupt file fails here, named, before any model loads
    return str(path)


def read_checkpoint(path: Path) -> CheckpointInfo:
    """The step and config a checkpoint (file, or sharded directory) was saved with.

    Tensors are memory-mapped, not read: a truncated file fails (its zip index is at the end)
    without the cost of loading a large checkpoint twice.
    """
    metadata = path / SHARDED_METADATA if path.is_dir() else path
    try:
        state = torch.load(metadata, map_location="cpu", weights_only=True, mmap=not path.is_dir())
        return CheckpointInfo(path, int(state["global_step"]), dict(state.get("config") or {}))
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, KeyError ...
        raise UnreadableCheckpoint(
            f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); it is truncated or corrupt: "
            "resume from another checkpoint (ckpt_path=last falls back to the newest readable one)"
        ) from error


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint was saved at (a file, or a sharded directory's metadata)."""
    return read_checkpoint(path).step


def _newest_readable(checkpoints: Path) -> Path | None:
    """What `last.ckpt` points at (or, for a full sharded last.ckpt of an older run cut between its
    renames, last.ckpt.old), else the newest readable step=N.ckpt."""
    last = last_target(checkpoints)
    candidates = [last] if last is not None else []
    candidates.append(checkpoints / (LAST_NAME + ".old"))
    steps = [(int(m.group(1)), p) for p in checkpoints.glob("step=*") if (m := STEP_FILE.fullmatch(p.name))]
    candidates += [p for _, p in sorted(steps, key=lambda item: item[0], reverse=True)]
    for candidate in filter(Path.exists, dict.fromkeys(candidates)):  # last's target is a step file too: once
        try:
            _check_readable(candidate)
        except UnreadableCheckpoint as error:
            log.warning("%s", error)
            continue
        if candidate != last:
            log.warning("ckpt_path=last: %s is missing or unreadable, resuming from %s", last or LAST_NAME, candidate)
        return candidate
    return None


def _check_readable(path: Path) -> None:
    """A file must open; a sharded directory must hold its metadata (its shards are checked by the load)."""
    if path.is_dir():
        if not (path / SHARDED_METADATA).is_file():
            raise UnreadableCheckpoint(f"checkpoint {path} has no {SHARDED_METADATA}: the save did not finish")
        return
    read_checkpoint(path)
