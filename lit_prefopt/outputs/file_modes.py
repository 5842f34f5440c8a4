"""Exported files get the permissions any file the user creates gets.

transformers writes `model.safetensors` to a private temporary file (mode 0600) and renames it
into place, so the exported model was unreadable to the user's group, unlike every other file
of the run.
"""

from __future__ import annotations

import os
from pathlib import Path


def apply_umask(directory: Path) -> None:
    """Give every file under `directory` mode 0666 minus the process umask (what open() gives)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in directory.rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~umask)
