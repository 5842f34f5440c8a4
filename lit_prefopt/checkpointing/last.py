"""`checkpoints/last.ckpt`: a pointer to the newest complete `step=N.ckpt`, never a second copy.

Writing `last` as a full checkpoint beside every `step=N` doubled the bytes of every save (at 8B
under FSDP about 96 GB each). `last.ckpt` is instead a relative symbolic link to the step file or
sharded directory, switched atomically: the new link is made under a temporary name and renamed
over the old one (`os.replace`), so a reader sees either the previous target or the new one. It is
switched only after the save it names has completed (for an asynchronous save: once its write
finished and its staging directory was renamed), so it never names an unfinished checkpoint.

Where the filesystem has no symbolic links, a small text file `checkpoints/last` holding the
target's name takes its place (written atomically too). A `last.ckpt` that is a real file or
directory (runs from before it was a link) is still read as the checkpoint itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from lit_prefopt.checkpointing.files import fsync_directory, remove_checkpoint_path, write_atomically

LAST_NAME = "last.ckpt"
POINTER_NAME = "last"  # the text-file pointer where symbolic links are unavailable


def point_last_at(target: Path) -> None:
    """Make `last.ckpt` (in `target`'s directory) name `target`, in one atomic step."""
    checkpoints = target.parent
    link = checkpoints / LAST_NAME
    temporary = checkpoints / f".{LAST_NAME}.{os.getpid()}.link"
    temporary.unlink(missing_ok=True)
    try:
        os.symlink(target.name, temporary)
    except OSError:
        write_atomically(checkpoints / POINTER_NAME, lambda file: file.write(target.name.encode()))
        if link.is_symlink():  # a stale link would name an older checkpoint
            link.unlink()
        return
    if link.is_dir() and not link.is_symlink():  # a full sharded last.ckpt of an older run: no rename over it
        aside = link.with_name(LAST_NAME + ".old")
        remove_checkpoint_path(aside)
        link.rename(aside)
        os.replace(temporary, link)
        remove_checkpoint_path(aside)
    else:
        os.replace(temporary, link)
    (checkpoints / POINTER_NAME).unlink(missing_ok=True)
    fsync_directory(checkpoints)


def last_target(checkpoints: Path) -> Path | None:
    """The checkpoint `last` names (a link's target, the pointer file's name, or a full `last.ckpt`
    of an older run), whether or not it exists; None when there is no `last`."""
    link = checkpoints / LAST_NAME
    if link.is_symlink():
        return checkpoints / os.readlink(link)
    if link.exists():
        return link
    pointer = checkpoints / POINTER_NAME
    if pointer.is_file():
        return checkpoints / pointer.read_text().strip()
    return None
