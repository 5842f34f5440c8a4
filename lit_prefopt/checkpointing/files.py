"""Checkpoint files land atomically on the run's own filesystem.

Lightning writes a checkpoint through fsspec, whose local "transaction" writes a temporary file in
the system temp directory and then moves it: across filesystems that is a copy, so a full disk
leaves a truncated `step=N.ckpt`. Here the bytes go to a hidden temporary file in the target
directory, are fsynced, and `os.replace` renames them over the target (atomic on POSIX, NFS
included); the directory is fsynced so the rename itself survives a crash. A failed write
removes its temporary file and raises `CheckpointWriteError` naming the target: the previous
checkpoint under that name is untouched.

A sharded (FSDP) checkpoint is a directory of many files, which no single rename can write: it is
written under `<target>.saving` and moved into place by `replace_directory` once every rank has
finished (lit_prefopt.checkpointing.sharded).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from lightning.fabric.plugins import TorchCheckpointIO
from torch import save as torch_save

TEMPORARY_SUFFIX = ".saving"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the run stops, earlier checkpoints are intact."""


def write_atomically(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `target` through `write(file)` so that it is either the old file or the whole new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX, dir=target.parent)
    recording: _ErrorRecordingFile | None = None
    try:
        os.fchmod(descriptor, 0o666 & ~_umask())  # mkstemp's 0600 would hide checkpoints from the group
        with os.fdopen(descriptor, "wb") as file:
            recording = _ErrorRecordingFile(file)
            write(recording)  # type: ignore[arg-type]
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        cause = recording.error if recording is not None and recording.error is not None else error
        if isinstance(cause, OSError):
            raise CheckpointWriteError(cause.errno, _explain(target, cause)) from error
        raise
    fsync_directory(target.parent)


class _ErrorRecordingFile:
    """Keeps the OSError of a failed write: torch's zip writer reports a full disk only as
    "unexpected pos", without the errno."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO (the trainer's `plugins`) with `write_atomically` for every file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        write_atomically(Path(path), lambda file: torch_save(checkpoint, file))


def _explain(target: Path, error: OSError) -> str:
    reason = "the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else error.strerror or str(error)
    return (
        f"could not write the checkpoint {target}: {reason} ({error}). The partial file was removed and "
        f"earlier checkpoints are intact; free space, then resume with ckpt_path=last"
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def staging_path(target: Path) -> Path:
    """Where a sharded checkpoint is written before `replace_directory` moves it to `target`."""
    return target.with_name(target.name + TEMPORARY_SUFFIX)


def replace_directory(staging: Path, target: Path) -> None:
    """Move `staging` to `target`; the previous `target` survives as `<target>.old` until then."""
    previous = target.with_name(target.name + ".old")
    if target.exists() or target.is_symlink():
        remove_checkpoint_path(previous)
        target.rename(previous)
    staging.rename(target)
    remove_checkpoint_path(previous)
    fsync_directory(target.parent)


def remove_checkpoint_path(path: Path) -> None:
    """Delete a checkpoint: a link (never what it points at), a sharded directory, or a file."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def fsync_directory(directory: Path) -> None:
    """Make a rename durable (where the filesystem supports fsync on a directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
