"""Reading JSONL files lazily, line by line, plain or gzip.

Lines are read as bytes and only decoded by the worker that owns them, so sharding a stream
costs each worker a pass over the bytes but parsing only its own share.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class RawLine:
    """One non-blank line of a file, or a file-level `problem` (an empty or unreadable file)."""

    where: str
    data: bytes
    problem: str | None = None


def read_lines(path: Path) -> Iterator[RawLine]:
    """The non-blank lines of a (possibly gzip) JSONL file, as bytes, located as `file:line`.

    A BOM at the start of the file is stripped. A file without records, or gzip data that
    breaks off or is corrupt (zlib's own error is no OSError and names no file), comes out as a
    `RawLine` with a `problem` instead of an exception, so that `data.on_bad_record=skip` can
    count it and go on.
    """
    count = 0
    line_no = 0
    try:
        with _open(path) as lines:
            for line_no, data in enumerate(lines, start=1):
                if line_no == 1 and data.startswith(BOM):
                    data = data[len(BOM):]
                if data.strip():
                    count += 1
                    yield RawLine(f"{path}:{line_no}", data)
    except (OSError, EOFError, zlib.error) as error:
        yield RawLine(f"{path}:{line_no + 1}", b"", f"unreadable file ({error})")
        return
    if count == 0:
        yield RawLine(str(path), b"", "empty file (no records)")


def iter_lines(files: Sequence[Path]) -> Iterator[RawLine]:
    """Every line of the files, one file after the other."""
    for path in files:
        yield from read_lines(path)


def count_records(path: Path) -> int:
    """Non-blank lines of a file: a cheap pass over its bytes, with no parsing."""
    return sum(1 for line in read_lines(path) if line.problem is None)


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
