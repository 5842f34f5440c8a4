"""Resolving a config value (`data.train_files`, `data.val_files`) into the files to read.

An input is a file, a directory (every `*.jsonl` and `*.jsonl.gz` below it, sorted, so the order
never depends on the file system), or a directory with a manifest giving sampling weights (see
`mixture.py`). Errors name the config key and the path, because that is what the user edits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lit_prefopt.data.mixture import MANIFEST_NAMES, Mixture, load_manifest

PATTERNS = ("*.jsonl", "*.jsonl.gz")


@dataclass(frozen=True)
class DataSources:
    """The resolved files of one config key, with sampling weights when a manifest gave them."""

    key: str
    files: tuple[Path, ...]
    mixture: Mixture | None = None


def resolve_sources(inputs: str | Sequence[str] | None, key: str) -> DataSources:
    """Resolve a config value into files; errors name the config key and the path."""
    entries = [inputs] if isinstance(inputs, (str, Path)) else list(inputs or [])
    if not entries:
        raise ValueError(f"{key} is empty: give at least one file or directory")
    files: list[Path] = []
    for entry in map(Path, entries):
        if not entry.exists():
            raise FileNotFoundError(f"{key}: {entry} does not exist")
        manifest = next((entry / name for name in MANIFEST_NAMES if (entry / name).is_file()), None)
        if manifest is not None:
            if len(entries) > 1:
                raise ValueError(f"{key}: the manifest directory {entry} must be the only input (its manifest sets the weights)")
            mixture = load_manifest(manifest, key)
            return DataSources(key, mixture.files, mixture)
        if entry.is_dir():
            found = sorted(
                {p for pattern in PATTERNS for p in entry.rglob(pattern) if p.is_file() and not _hidden(p, entry)}
            )
            if not found:
                raise FileNotFoundError(f"{key}: directory {entry} holds no *.jsonl or *.jsonl.gz files")
            files.extend(found)
        else:
            files.append(entry)
    return DataSources(key, tuple(files))




def _hidden(path: Path, root: Path) -> bool:
    """Below `root`, a dot-file or a file in a dot-directory (`.ipynb_checkpoints/`, `.git/`): copies
    and tool state, not data, so a directory input skips them."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)
