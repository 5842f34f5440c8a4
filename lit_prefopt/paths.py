"""Where lit_prefopt keeps things outside a run directory: its cache and its bundled sample."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def default_cache_dir() -> Path:
    """`$LIT_PREFOPT_CACHE` or `~/.cache/lit_prefopt` (never beside the data)."""
    return Path(os.environ.get("LIT_PREFOPT_CACHE", Path.home() / ".cache" / "lit_prefopt"))


def sample_data_path(name: str) -> Path:
    """A file of the benign preference pairs bundled for the default run."""
    return PACKAGE_DIR / "resources" / "sample" / name
